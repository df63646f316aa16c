# static-deps.cmake: the trawl binary links libcurl, OpenSSL, ZeroMQ (with libsodium, OpenPGM,
# libbsd), SQLite, RE2, gumbo, zlib, brotli and jemalloc from the static archives their Debian
# -dev packages ship, libstdc++ and libgcc statically (-static-libstdc++), spdlog and fmt compiled
# in (their header-only modes: Debian ships no archive of them), and trawl's stand-ins
# (cmake/stand-ins.cmake) for the libraries libcurl and libzmq name but trawl never uses, and
# libcurl's own dependencies (libnghttp2, libidn2, libpsl, libzstd, libunistring) from theirs.
# Only libc and libm are loaded.
#
# Why: a process's start on these machines is mostly the dynamic linker's (mapping each library,
# then its relocations and symbol bindings, each first write to a page a fault of ~11 us;
# docs/ARCHITECTURE.md, The launcher), and a job's clock starts with it: trawl pipeline forks
# every role from itself, so nothing runs before the launcher's first fork. Linked this way,
# trawl loaded 9 libraries instead of 35 (49 without the stand-ins) in session 36, and 4 (the
# dynamic linker, the vdso, libc and libm) since session 37 linked libcurl's five C dependencies
# from their archives too (docs/ARCHITECTURE.md, The launcher). In session 36's classic jobs
# (uprobes, medians of 8 alternating jobs each) the launcher reached main 7.2 ms after its exec, against
# 16.9 with the shared libraries and stand-ins and 10.8 with the archives but libstdc++, spdlog,
# fmt, jemalloc and libnorm still shared; its first fork of a role came 12.7 ms after its exec,
# against 26.6 and 18.1 (33.7 with neither stand-ins nor archives; 10 alternating jobs each).
#
# The cost: a security update of one of those Debian packages reaches trawl only when trawl is
# rebuilt against it (docs/OPERATIONS.md). -DTRAWL_STATIC_DEPS=OFF links the shared libraries
# instead (with the stand-ins as shared libraries). Only the trawl binary is linked from the
# archives; the tests' own executables link the shared libraries, but spdlog is header-only in
# all of them (one mode per build). Never in a sanitizer build.
#
# How: each dependency is an INTERFACE target, trawl_dep_<name>, that the trawl_* libraries link
# instead of the imported one. Its link items depend on the TRAWL_STATIC_DEPS property of the
# executable being linked (set on trawl alone): the archives there, the imported target elsewhere.
option(TRAWL_STATIC_DEPS "Link libcurl, OpenSSL, ZeroMQ, SQLite and others into trawl from their static archives" ON)

set(TRAWL_STATIC_DEPS_ACTIVE OFF)
# The archives the trawl_dep_* targets below name.
set(trawl_static_files libcurl.a libssl.a libcrypto.a libzmq.a libsodium.a libpgm.a libbsd.a libmd.a
    libsqlite3.a libre2.a libgumbo.a libz.a libbrotlidec.a libbrotlicommon.a libnghttp2.a
    libidn2.a libpsl.a libzstd.a libunistring.a)
if(TRAWL_JEMALLOC)
  list(APPEND trawl_static_files libjemalloc_pic.a)
endif()
if(TRAWL_STATIC_DEPS AND NOT TRAWL_SANITIZING AND TARGET trawl_stand_ins_static)
  set(missing "")
  foreach(file IN LISTS trawl_static_files)
    trawl_system_file(path ${file})
    if(NOT path)
      list(APPEND missing ${file})
    endif()
  endforeach()
  if(missing)
    message(FATAL_ERROR "TRAWL_STATIC_DEPS: not found: ${missing} (scripts/install-deps installs "
                        "the Debian packages that have them; -DTRAWL_STATIC_DEPS=OFF links the "
                        "shared libraries instead)")
  else()
    set(TRAWL_STATIC_DEPS_ACTIVE ON)
    message(STATUS "trawl links libcurl, OpenSSL, ZeroMQ, SQLite and others from static archives")
  endif()
endif()

# trawl_dep(NAME SHARED item... STATIC item...): the INTERFACE target trawl_dep_NAME. A STATIC
# item is a file of trawl_static_files (libcurl.a), or any link item (a target,
# m for -lm).
function(trawl_dep name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "" "SHARED;STATIC")
  add_library(trawl_dep_${name} INTERFACE)
  if(NOT TRAWL_STATIC_DEPS_ACTIVE)
    target_link_libraries(trawl_dep_${name} INTERFACE ${arg_SHARED})
    return()
  endif()
  set(static_head "$<BOOL:$<TARGET_PROPERTY:TRAWL_STATIC_DEPS>>")
  foreach(item IN LISTS arg_SHARED)
    target_link_libraries(trawl_dep_${name} INTERFACE "$<$<NOT:${static_head}>:${item}>")
    # What compiles against it (the trawl_* libraries themselves) still sees its headers.
    if(TARGET ${item})
      target_include_directories(trawl_dep_${name} SYSTEM INTERFACE
                                 $<TARGET_PROPERTY:${item},INTERFACE_INCLUDE_DIRECTORIES>)
    endif()
  endforeach()
  foreach(item IN LISTS arg_STATIC)
    if(item IN_LIST trawl_static_files)
      trawl_system_file(item ${item})
    endif()
    target_link_libraries(trawl_dep_${name} INTERFACE "$<${static_head}:${item}>")
  endforeach()
endfunction()

trawl_dep(crypto SHARED OpenSSL::Crypto STATIC libcrypto.a ${CMAKE_DL_LIBS} Threads::Threads)
trawl_dep(zlib SHARED ZLIB::ZLIB STATIC libz.a)
trawl_dep(curl SHARED CURL::libcurl
          STATIC libcurl.a trawl_stand_ins_static libnghttp2.a libpsl.a libidn2.a libunistring.a
                 libssl.a trawl_dep_crypto libzstd.a libbrotlidec.a libbrotlicommon.a
                 trawl_dep_zlib Threads::Threads)
trawl_dep(zmq SHARED cppzmq
          STATIC libzmq.a libsodium.a libpgm.a libbsd.a libmd.a trawl_stand_ins_static rt
                 Threads::Threads m)
trawl_dep(sqlite SHARED SQLite::SQLite3 STATIC libsqlite3.a m ${CMAKE_DL_LIBS} Threads::Threads)
trawl_dep(re2 SHARED PkgConfig::RE2 STATIC libre2.a Threads::Threads)
trawl_dep(gumbo SHARED PkgConfig::GUMBO STATIC libgumbo.a)

# spdlog and fmt, which Debian ships as shared libraries only, compiled into each object that
# logs (their header-only modes) when trawl links the archives: with them, libstdc++ and libgcc
# are linked statically too (app/CMakeLists.txt), and no C++ library is loaded at all.
add_library(trawl_dep_spdlog INTERFACE)
if(TRAWL_STATIC_DEPS_ACTIVE)
  target_compile_definitions(trawl_dep_spdlog INTERFACE SPDLOG_FMT_EXTERNAL FMT_HEADER_ONLY=1)
  target_link_libraries(trawl_dep_spdlog INTERFACE Threads::Threads)
else()
  target_link_libraries(trawl_dep_spdlog INTERFACE spdlog::spdlog)
endif()
