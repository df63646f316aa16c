# stand-ins.cmake: small libraries of trawl's own that take the place of four of libcurl's and
# libzmq's dependencies which trawl never uses, so that the dynamic linker does not load them and
# the 14 libraries they bring (GnuTLS and 6 of its own, Kerberos and 5, SASL).
#
# Debian's libcurl is linked with LDAP (libldap, liblber), RTMP (librtmp) and GSS-API
# (libgssapi_krb5, also needed by libzmq for its GSSAPI mechanism); loading them brings GnuTLS,
# p11-kit, nettle, GMP, Kerberos... 18 of the 49 libraries a trawl process had, 30 % of their
# relocations. trawl allows http and https only (CURLOPT_PROTOCOLS_STR), asks for no Negotiate
# authentication and sets no ZeroMQ GSSAPI option, so their code never runs. Each stand-in has the
# real library's soname and defines exactly the symbols that libcurl and libzmq import from it
# (cmake/stand-in.sh reads them with nm at configure time: same names, versions and data sizes).
# The trawl binary names the stand-ins in its own DT_NEEDED with a RUNPATH to their directory, so
# the dynamic linker loads them first; when libcurl then asks for the same soname it is already
# loaded. Where the stand-ins are not found, the real libraries are loaded as before.
# Measured: `trawl --version` 18-19 ms against 24-25 (perf stat -r 40, 3 alternating sets),
# 630 page faults against 820. See docs/ARCHITECTURE.md (The launcher).
#
# TRAWL_STAND_INS=OFF links the real libraries. Never in a sanitizer build (its runtime must
# come first among the libraries; see app/CMakeLists.txt).
option(TRAWL_STAND_INS "Link trawl's stand-ins for libcurl's unused LDAP, RTMP and GSS-API libraries" ON)

set(TRAWL_STAND_IN_SONAMES librtmp.so.1 libldap-2.5.so.0 liblber-2.5.so.0 libgssapi_krb5.so.2)
set(TRAWL_STAND_IN_DIR ${CMAKE_BINARY_DIR}/stand-ins)

# trawl_stand_ins(OUT_VAR): makes a shared-library target per stand-in whose real library is
# installed, and sets OUT_VAR to the list of those targets (empty when TRAWL_STAND_INS is off).
function(trawl_stand_ins out_var)
  set(targets "")
  if(NOT TRAWL_STAND_INS OR TRAWL_SANITIZING)
    set(${out_var} "" PARENT_SCOPE)
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
    set(${out_var} "" PARENT_SCOPE)
    return()
  endif()
  file(MAKE_DIRECTORY ${TRAWL_STAND_IN_DIR}/src)
  foreach(soname IN LISTS TRAWL_STAND_IN_SONAMES)
    string(MAKE_C_IDENTIFIER "TRAWL_REAL_${soname}" var)
    find_file(${var} ${soname} PATHS ${CMAKE_CXX_IMPLICIT_LINK_DIRECTORIES} NO_DEFAULT_PATH)
    if(NOT ${var} OR NOT soname MATCHES "^lib(.+)\\.so\\.([0-9]+)$")
      continue()
    endif()
    set(name ${CMAKE_MATCH_1})
    set(soversion ${CMAKE_MATCH_2})
    set(src ${TRAWL_STAND_IN_DIR}/src/${soname}.c)
    set(map ${TRAWL_STAND_IN_DIR}/src/${soname}.map)
    execute_process(
      COMMAND bash ${PROJECT_SOURCE_DIR}/cmake/stand-in.sh ${CMAKE_NM} ${soname} ${${var}} ${src} ${map}
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
    install(TARGETS ${target} LIBRARY DESTINATION lib/trawl NAMELINK_SKIP)
    list(APPEND targets ${target})
    message(STATUS "stand-in for ${soname}: ${count} symbols")
  endforeach()
  set_property(GLOBAL PROPERTY TRAWL_STAND_IN_TARGETS ${targets})
  set(${out_var} ${targets} PARENT_SCOPE)
endfunction()
