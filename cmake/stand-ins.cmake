# stand-ins.cmake: small libraries of trawl's own that take the place of six of libcurl's and
# libzmq's dependencies which trawl never uses, so that neither they nor the 14 libraries they
# bring (GnuTLS and 6 of its own, Kerberos and 5, SASL) are loaded.
#
# Debian's libcurl is linked with LDAP (libldap, liblber), RTMP (librtmp), SSH (libssh2) and
# GSS-API (libgssapi_krb5, also needed by libzmq for its GSSAPI mechanism), and libzmq with NORM
# (libnorm, a multicast transport); loading them brings GnuTLS, p11-kit, nettle, GMP, Kerberos...
# trawl allows http and https only (CURLOPT_PROTOCOLS_STR), asks for no Negotiate
# authentication, sets no ZeroMQ GSSAPI option and refuses any endpoint but tcp, ipc and inproc
# (common/zmq_util.cpp), so their code never runs, except libssh2's global set-up and clean-up.
# Each stand-in has the real library's soname and defines exactly the symbols that libcurl and
# libzmq import from it (cmake/stand-in.sh reads them with nm at configure time: same names,
# versions and data sizes; it also says what the functions do).
#
# Two uses. With the static archives (cmake/static-deps.cmake, the default), the static library
# trawl_stand_ins_static resolves those symbols inside the trawl binary. With the shared libraries
# (-DTRAWL_STATIC_DEPS=OFF), trawl names the shared stand-ins in its own DT_NEEDED with a RUNPATH to
# their directory, so the dynamic linker loads them first; when libcurl then asks for the same
# soname it is already loaded (where they are not found, the real libraries load as before). That
# took `trawl --version` from 29.0 and 28.9 ms to 22.8 and 22.3 (perf stat -r 40, 2 alternating
# sets, LD_BIND_NOW), 625 page faults against 781, and the dynamic linker's relocations from 59,756
# to 41,950.
# The shared stand-ins are built in both modes: tests/unit/stand_ins calls them.
#
# TRAWL_STAND_INS=OFF links the real libraries (and so the shared ones: static-deps.cmake needs
# the stand-ins). Never in a sanitizer build (its runtime must come first among the libraries;
# see app/CMakeLists.txt).
option(TRAWL_STAND_INS "Link trawl's stand-ins for libcurl's unused LDAP, RTMP, SSH and GSS-API libraries" ON)

set(TRAWL_STAND_IN_SONAMES librtmp.so.1 libldap-2.5.so.0 liblber-2.5.so.0 libgssapi_krb5.so.2
    libssh2.so.1 libnorm.so.1)
set(TRAWL_STAND_IN_DIR ${CMAKE_BINARY_DIR}/stand-ins)

# trawl_stand_ins(): when TRAWL_STAND_INS is on (never in a sanitizer build), makes a shared
# library target per stand-in whose real library is installed, each with the real soname, in
# build/stand-ins (their list in the global property TRAWL_STAND_IN_TARGETS), and one static
# library of them all, trawl_stand_ins_static, for a trawl linked with static archives
# (cmake/static-deps.cmake).
function(trawl_stand_ins)
  set(targets "")
  set(sources "")
  if(NOT TRAWL_STAND_INS OR TRAWL_SANITIZING)
    return()
  endif()
  find_library(TRAWL_LIBZMQ_FILE zmq)
  set(consumers "")
  foreach(lib IN ITEMS ${CURL_LIBRARIES} ${TRAWL_LIBZMQ_FILE})
    if(lib MATCHES "\\.so" AND EXISTS ${lib})
      get_filename_component(real ${lib} REALPATH)
      list(APPEND consumers ${real})
      set_property(DIRECTORY ${PROJECT_SOURCE_DIR} APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${real})
    endif()
  endforeach()
  if(NOT consumers)
    return()
  endif()
  file(MAKE_DIRECTORY ${TRAWL_STAND_IN_DIR}/src)
  foreach(soname IN LISTS TRAWL_STAND_IN_SONAMES)
    trawl_system_file(real ${soname})
    if(NOT real OR NOT soname MATCHES "^lib(.+)\\.so\\.([0-9]+)$")
      continue()
    endif()
    set(name ${CMAKE_MATCH_1})
    set(soversion ${CMAKE_MATCH_2})
    set(src ${TRAWL_STAND_IN_DIR}/src/${soname}.c)
    set(map ${TRAWL_STAND_IN_DIR}/src/${soname}.map)
    execute_process(
      COMMAND bash ${PROJECT_SOURCE_DIR}/cmake/stand-in.sh ${CMAKE_NM} ${soname} ${real} ${src} ${map}
              ${consumers}
      RESULT_VARIABLE rc OUTPUT_VARIABLE count ERROR_VARIABLE err OUTPUT_STRIP_TRAILING_WHITESPACE)
    if(NOT rc EQUAL 0)
      message(WARNING "no stand-in for ${soname} (the real one is linked): ${err}")
      continue()
    endif()
    string(MAKE_C_IDENTIFIER "trawl_stand_in_${name}" target)
    add_library(${target} SHARED ${src})
    set_target_properties(${target} PROPERTIES
      OUTPUT_NAME ${name} SOVERSION ${soversion} LIBRARY_OUTPUT_DIRECTORY ${TRAWL_STAND_IN_DIR}
      C_VISIBILITY_PRESET default LINK_DEPENDS ${map})
    target_link_options(${target} PRIVATE "LINKER:--version-script=${map}")
    list(APPEND targets ${target})
    list(APPEND sources ${src})
    message(STATUS "stand-in for ${soname}: ${count} symbols")
  endforeach()
  if(sources)
    add_library(trawl_stand_ins_static STATIC ${sources})
  endif()
  set_property(GLOBAL PROPERTY TRAWL_STAND_IN_TARGETS ${targets})
endfunction()
trawl_stand_ins()
