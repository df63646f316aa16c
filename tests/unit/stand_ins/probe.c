/* stand_in_probe LIBRARY SYMBOL: opens LIBRARY (a stand-in, cmake/stand-ins.cmake) and calls its
 * function SYMBOL as its callers would. A GSS-API function (gss_*) is called as
 * `OM_uint32 f(OM_uint32 *minor_status, ...)` and its major and minor status are printed;
 * libssh2_init as `int libssh2_init(int flags)` (exit 0 when it returns 0); any other function is
 * called with no arguments and should not return (the stand-in aborts). Used
 * by tests/unit/stand_ins/stand_ins.sh. Exit 2: the library or the symbol is missing. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: stand_in_probe LIBRARY SYMBOL\n");
    return 2;
  }
  void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    fprintf(stderr, "stand_in_probe: %s\n", dlerror());
    return 2;
  }
  void* sym = dlsym(lib, argv[2]);
  if (!sym) {
    fprintf(stderr, "stand_in_probe: no %s in %s\n", argv[2], argv[1]);
    return 2;
  }
  if (strncmp(argv[2], "gss_", 4) == 0) {
    unsigned int (*gss)(unsigned int*, void*, void*, void*);
    memcpy(&gss, &sym, sizeof gss);
    unsigned int minor = 12345;
    unsigned int major = gss(&minor, NULL, NULL, NULL);
    printf("major=0x%x minor=%u\n", major, minor);
    return 0;
  }
  if (strcmp(argv[2], "libssh2_init") == 0) { /* int libssh2_init(int flags): 0 is success */
    int (*init)(int);
    memcpy(&init, &sym, sizeof init);
    int rc = init(0);
    printf("libssh2_init: %d\n", rc);
    return rc == 0 ? 0 : 1;
  }
  void (*fn)(void);
  memcpy(&fn, &sym, sizeof fn);
  fn();
  printf("returned\n");
  return 0;
}
