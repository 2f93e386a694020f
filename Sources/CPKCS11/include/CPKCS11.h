#ifndef CPKCS11_H
#define CPKCS11_H
// The system's PKCS#11 header (p11-kit's copy of the OASIS header), made visible to Swift, and a
// few helpers that keep attribute templates and mechanism parameters on the C side.
// Included by absolute path so that Swift clients of this module need no -I flag (the C target
// itself is also given -I/usr/include/p11-kit-1 in Package.swift).
#include "/usr/include/p11-kit-1/p11-kit/pkcs11.h"

/// Loads a PKCS#11 module with dlopen and returns its function list, behind the exit gate.
/// Returns CKR_OK, or CKR_GENERAL_ERROR with a message in `error` (at most `error_len` bytes).
CK_RV cs_p11_load(const char *path, void **handle, CK_FUNCTION_LIST_PTR *functions,
                  char *error, unsigned long error_len);

/// The function list that goes through the exit gate (gate.c): every call the product makes is
/// counted, and the process never exits while a thread is inside the module. Called by
/// cs_p11_load; CKR_GENERAL_ERROR if another module is already gated in this process.
CK_RV cs_p11_gate(CK_FUNCTION_LIST_PTR module, CK_FUNCTION_LIST_PTR *gated_list);

/// Registers the exit handler of the gate (once per process); cs_p11_initialize calls it after the
/// module's first successful C_Initialize, so that it runs before the module's and OpenSSL's own
/// exit-time teardown.
void cs_p11_register_exit_gate(void);

/// dlclose for a handle returned by cs_p11_load.
void cs_p11_unload(void *handle);

/// C_Initialize with CKF_OS_LOCKING_OK (a NULL argument would turn SoftHSM's locking off).
/// CKR_CRYPTOKI_ALREADY_INITIALIZED is returned as is; the caller decides.
CK_RV cs_p11_initialize(CK_FUNCTION_LIST_PTR f);

/// Finds the slot whose token label (space padded to 32 bytes in CK_TOKEN_INFO) is `label`.
/// CKR_TOKEN_NOT_PRESENT when no present token has that label.
CK_RV cs_p11_find_slot(CK_FUNCTION_LIST_PTR f, const char *label, CK_SLOT_ID *slot);

/// Generates a key pair in the token: `kind` 0 = ECDSA P-256, 1 = RSA with `rsa_bits` bits
/// (public exponent 65537). The private key is CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE true,
/// CKA_EXTRACTABLE false, CKA_SIGN true; both halves carry `label` and `id`.
CK_RV cs_p11_generate(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, int kind, unsigned long rsa_bits,
                      const char *label, const unsigned char *id, unsigned long id_len,
                      CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv);

/// Finds up to `max` objects of class `cls` (CKO_PUBLIC_KEY, CKO_PRIVATE_KEY, ...); when `id` is
/// not NULL only those whose CKA_ID equals it.
CK_RV cs_p11_find(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls,
                  const unsigned char *id, unsigned long id_len,
                  CK_OBJECT_HANDLE *out, unsigned long max, unsigned long *count);

/// Reads one attribute. Call with `buf` NULL to learn the length in `*len`.
CK_RV cs_p11_get_attribute(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
                           CK_ATTRIBUTE_TYPE type, void *buf, unsigned long *len);

/// One signature: C_SignInit + C_Sign. `kind` 0 = CKM_ECDSA (the input is the SHA-256 digest, the
/// output raw r||s), 1 = CKM_RSA_PKCS_PSS (SHA-256, MGF1-SHA-256, 32-byte salt; input the digest).
CK_RV cs_p11_sign(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, int kind,
                  const unsigned char *digest, unsigned long digest_len,
                  unsigned char *sig, unsigned long *sig_len);

/// The raw baseline for the benchmark: `threads` pthreads, thread i signing a fixed 32-byte digest
/// in a tight loop with `sessions[i]` for `seconds`. Returns CKR_OK or the first failure; the total
/// number of signatures in `*total` and the measured wall time in `*elapsed_seconds`.
CK_RV cs_p11_bench(CK_FUNCTION_LIST_PTR f, const CK_SESSION_HANDLE *sessions, int threads,
                   CK_OBJECT_HANDLE key, int kind, double seconds,
                   unsigned long long *total, double *elapsed_seconds);
#endif
