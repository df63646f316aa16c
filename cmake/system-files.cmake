# system-files.cmake: trawl_system_file(OUT_VAR FILE) sets OUT_VAR to the path of FILE (a library
# or an archive, e.g. libcurl.a or libssl.so.3) in the compiler's own library directories, or to
# "" when it is not there. Found once and cached (TRAWL_FILE_<FILE>). Used by cmake/stand-ins.cmake,
# cmake/static-deps.cmake and app/CMakeLists.txt, which name libraries by their exact file names.
function(trawl_system_file out_var file)
  string(MAKE_C_IDENTIFIER "TRAWL_FILE_${file}" var)
  find_file(${var} ${file} PATHS ${CMAKE_CXX_IMPLICIT_LINK_DIRECTORIES} NO_DEFAULT_PATH)
  if(${var})
    set(${out_var} ${${var}} PARENT_SCOPE)
  else()
    set(${out_var} "" PARENT_SCOPE)
  endif()
endfunction()
