#ifndef CPKCS11_H
#define CPKCS11_H
// The system's PKCS#11 header (p11-kit's copy of the OASIS header), made visible to Swift.
#include <p11-kit/pkcs11.h>

/// Loads a PKCS#11 module with dlopen and returns its function list.
/// Returns CKR_OK, or CKR_GENERAL_ERROR with a message in `error` (at most `error_len` bytes).
CK_RV cs_p11_load(const char *path, void **handle, CK_FUNCTION_LIST_PTR *functions,
                  char *error, unsigned long error_len);

/// dlclose for a handle returned by cs_p11_load.
void cs_p11_unload(void *handle);
#endif
