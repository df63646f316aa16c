# trawl_warnings(target): the project's warning set, applied per target rather than globally.
function(trawl_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
                                           -Wold-style-cast -Wcast-align -Woverloaded-virtual
                                           # a literal 0 that becomes a null pointer: e.g. a
                                           # std::string member from 0 in an aggregate whose
                                           # fields moved (it threw at run time in the vent)
                                           -Wzero-as-null-pointer-constant
                                           # optional message fields (proto meta) are meant to be left out
                                           -Wno-missing-field-initializers)
  if(TRAWL_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  if(TRAWL_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=address,undefined -fno-omit-frame-pointer)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined)
  endif()
endfunction()
