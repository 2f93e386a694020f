#include "CPKCS11.h"
#include <dlfcn.h>
#include <stdio.h>

CK_RV cs_p11_load(const char *path, void **handle, CK_FUNCTION_LIST_PTR *functions,
                  char *error, unsigned long error_len) {
    *handle = NULL;
    *functions = NULL;
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        snprintf(error, error_len, "dlopen: %s", dlerror());
        return CKR_GENERAL_ERROR;
    }
    CK_C_GetFunctionList get = (CK_C_GetFunctionList)dlsym(h, "C_GetFunctionList");
    if (get == NULL) {
        snprintf(error, error_len, "%s has no C_GetFunctionList", path);
        dlclose(h);
        return CKR_GENERAL_ERROR;
    }
    CK_RV rv = get(functions);
    if (rv != CKR_OK) {
        snprintf(error, error_len, "C_GetFunctionList returned 0x%lx", (unsigned long)rv);
        dlclose(h);
        return rv;
    }
    if (cs_p11_gate(*functions, functions) != CKR_OK) {
        snprintf(error, error_len, "this process already uses another PKCS#11 module; one per process");
        *functions = NULL;
        dlclose(h);
        return CKR_GENERAL_ERROR;
    }
    *handle = h;
    return CKR_OK;
}

void cs_p11_unload(void *handle) {
    if (handle != NULL) dlclose(handle);
}
