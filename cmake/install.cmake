# install.cmake: what `cmake --install` puts where, the man pages and bash completion generated
# from the trawl binary's own command-line tree, the Debian package (`cpack -G DEB`), and the
# tests of all three. Included at the end of the top-level CMakeLists.txt.
include(GNUInstallDirs)

# Man pages: trawl(1) and one per visible subcommand. tests/unit/app/man_matches_help.sh fails if
# this list and `trawl --help` disagree.
set(TRAWL_MAN_PAGES trawl fetch vent download sink monitor pipeline config completion keygen)
set(TRAWL_DOCS_DIR ${CMAKE_BINARY_DIR}/docs-gen)
set(TRAWL_DOCS_OUTPUTS ${TRAWL_DOCS_DIR}/completion/trawl)
foreach(page IN LISTS TRAWL_MAN_PAGES)
  if(page STREQUAL "trawl")
    set(name trawl)
  else()
    set(name trawl-${page})
  endif()
  list(APPEND TRAWL_MAN_FILES ${TRAWL_DOCS_DIR}/man/${name}.1.gz)
  list(APPEND TRAWL_DOCS_OUTPUTS ${TRAWL_DOCS_DIR}/man/${name}.1 ${TRAWL_DOCS_DIR}/man/${name}.1.gz)
endforeach()
add_custom_command(
  OUTPUT ${TRAWL_DOCS_OUTPUTS}
  COMMAND ${CMAKE_COMMAND} -DTRAWL=$<TARGET_FILE:trawl> -DOUT=${TRAWL_DOCS_DIR}
          "-DPAGES=${TRAWL_MAN_PAGES}" -P ${PROJECT_SOURCE_DIR}/cmake/gen-docs.cmake
  DEPENDS trawl ${PROJECT_SOURCE_DIR}/cmake/gen-docs.cmake
  COMMENT "Man pages and bash completion from trawl's command line"
  VERBATIM)
add_custom_target(trawl_docs ALL DEPENDS ${TRAWL_DOCS_OUTPUTS})

# The layout (prefix /usr in the package; /usr/local by default):
#   bin/trawl, bin/trawl-pipeline            the binary; launch/pipeline for installed use
#   lib/trawl/pipeline, lib/trawl/add-node   launch/pipeline and launch/add-node (launch/demo is dev-only)
#   lib/systemd/system/trawl-download@.service
#   share/man/man1/trawl*.1.gz, share/bash-completion/completions/trawl
#   share/doc/trawl/{README.md,OPERATIONS.md,ARCHITECTURE.md,PROTOCOL.md,CHANGELOG.md,examples/}
install(TARGETS trawl RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# Written again in 2 MiB writes where it lands (scripts/rewrite-2m).
if(TRAWL_HUGE_TEXT)
  install(CODE "execute_process(COMMAND sh \"${PROJECT_SOURCE_DIR}/scripts/rewrite-2m\"
    \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}/trawl\")")
endif()
install(PROGRAMS ${PROJECT_SOURCE_DIR}/packaging/trawl-pipeline DESTINATION ${CMAKE_INSTALL_BINDIR})
install(PROGRAMS ${PROJECT_SOURCE_DIR}/launch/pipeline ${PROJECT_SOURCE_DIR}/launch/add-node
        DESTINATION lib/trawl)
# The unit names /usr/bin/trawl; under another prefix it names that prefix's binary.
install(CODE "
  file(READ \"${PROJECT_SOURCE_DIR}/launch/trawl-download@.service\" unit)
  string(REPLACE \"/usr/bin/trawl\" \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}/trawl\" unit \"\${unit}\")
  string(REPLACE \"/usr/share/doc/trawl\" \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_DATADIR}/doc/trawl\" unit \"\${unit}\")
  set(dest \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/lib/systemd/system\")
  message(STATUS \"Installing: \${dest}/trawl-download@.service\")
  file(MAKE_DIRECTORY \"\${dest}\")
  file(WRITE \"\${dest}/trawl-download@.service\" \"\${unit}\")
")
install(FILES ${TRAWL_MAN_FILES} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${TRAWL_DOCS_DIR}/completion/trawl DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions)
install(FILES ${PROJECT_SOURCE_DIR}/packaging/examples/trawl.conf
              ${PROJECT_SOURCE_DIR}/packaging/examples/download-example.conf
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${PROJECT_SOURCE_DIR}/CHANGELOG.md
              ${PROJECT_SOURCE_DIR}/docs/OPERATIONS.md ${PROJECT_SOURCE_DIR}/docs/ARCHITECTURE.md
              ${PROJECT_SOURCE_DIR}/docs/PROTOCOL.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})

# The Debian package: trawl_<version>_<arch>.deb, Depends computed by dpkg-shlibdeps.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME trawl)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "trawl maintainers <trawl@localhost>")
set(CPACK_PACKAGE_VENDOR "trawl")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "distributed bulk downloader (ZeroMQ pipeline, libcurl)")
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "distributed bulk downloader (ZeroMQ pipeline, libcurl)\n"
    "trawl pulls thousands to millions of files from a gallery API, a URL list or standard\n"
    "input: one binary whose subcommands (fetch, vent, download, sink) run as separate\n"
    "processes joined by ZeroMQ, on one machine or many, each downloader running many\n"
    "concurrent libcurl transfers. Includes trawl-pipeline to run a whole job on one\n"
    "host and a systemd unit template for long-lived downloader nodes.")
string(REPLACE ";" "" CPACK_DEBIAN_PACKAGE_DESCRIPTION "${CPACK_DEBIAN_PACKAGE_DESCRIPTION}")
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "systemd")
# Loaded at run time for `trawl sink --metrics-port` (dlopen: dpkg-shlibdeps cannot see it).
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "libmicrohttpd12")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_PACKAGE_DIRECTORY ${CMAKE_BINARY_DIR}/package)
include(CPack)

if(TRAWL_BUILD_TESTS)
  add_test(NAME app.man_matches_help
           COMMAND bash ${PROJECT_SOURCE_DIR}/tests/unit/app/man_matches_help.sh
                   $<TARGET_FILE:trawl> ${TRAWL_DOCS_DIR}/man)
  add_test(NAME app.bash_completion
           COMMAND bash ${PROJECT_SOURCE_DIR}/tests/unit/app/bash_completion.sh
                   ${TRAWL_DOCS_DIR}/completion/trawl)
  set_tests_properties(app.man_matches_help app.bash_completion PROPERTIES LABELS unit TIMEOUT 60)
  add_test(NAME package.deb
           COMMAND bash ${PROJECT_SOURCE_DIR}/tests/package/test_deb.sh ${CMAKE_BINARY_DIR})
  set_tests_properties(package.deb PROPERTIES LABELS package TIMEOUT 300 RUN_SERIAL ON)
  # launch/add-node --deb with a fake ssh: the package copied and installed when trawl is
  # missing or older, skipped when current, the node run from the installed binary.
  add_test(NAME package.add_node_deb
           COMMAND bash ${PROJECT_SOURCE_DIR}/tests/package/add_node_deb.sh ${CMAKE_BINARY_DIR}
                   $<TARGET_FILE:trawl-fixture> ${PROJECT_SOURCE_DIR}/launch/pipeline
                   ${PROJECT_SOURCE_DIR}/launch/add-node)
  set_tests_properties(package.add_node_deb PROPERTIES LABELS "package;e2e" SKIP_RETURN_CODE 77
                       TIMEOUT 180 RUN_SERIAL ON ENVIRONMENT TRAWL_VENT_PER_HOST=0)
endif()
