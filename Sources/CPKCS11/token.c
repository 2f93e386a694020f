#include "CPKCS11.h"
#include <pthread.h>
#include <string.h>
#include <time.h>

CK_RV cs_p11_initialize(CK_FUNCTION_LIST_PTR f) {
    CK_C_INITIALIZE_ARGS args;
    memset(&args, 0, sizeof args);
    args.flags = CKF_OS_LOCKING_OK;
    CK_RV rv = f->C_Initialize(&args);
    if (rv == CKR_OK || rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) cs_p11_register_exit_gate();
    return rv;
}

CK_RV cs_p11_find_slot(CK_FUNCTION_LIST_PTR f, const char *label, CK_SLOT_ID *slot) {
    CK_ULONG count = 0;
    CK_RV rv = f->C_GetSlotList(CK_TRUE, NULL, &count);
    if (rv != CKR_OK) return rv;
    if (count == 0) return CKR_TOKEN_NOT_PRESENT;
    CK_SLOT_ID slots[256];
    if (count > 256) count = 256;
    rv = f->C_GetSlotList(CK_TRUE, slots, &count);
    if (rv != CKR_OK) return rv;
    char padded[32];
    size_t n = strlen(label);
    if (n > 32) return CKR_ARGUMENTS_BAD;
    memset(padded, ' ', 32);
    memcpy(padded, label, n);
    for (CK_ULONG i = 0; i < count; i++) {
        CK_TOKEN_INFO info;
        if (f->C_GetTokenInfo(slots[i], &info) != CKR_OK) continue;
        if (memcmp(info.label, padded, 32) == 0) {
            *slot = slots[i];
            return CKR_OK;
        }
    }
    return CKR_TOKEN_NOT_PRESENT;
}

CK_RV cs_p11_generate(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, int kind, unsigned long rsa_bits,
                      const char *label, const unsigned char *id, unsigned long id_len,
                      CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv) {
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ULONG label_len = strlen(label);
    // DER OID 1.2.840.10045.3.1.7 (prime256v1)
    static const unsigned char p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
    static const unsigned char e65537[] = {0x01, 0x00, 0x01};
    CK_ULONG bits = rsa_bits;
    CK_ATTRIBUTE pubt[8];
    int np = 0;
    pubt[np++] = (CK_ATTRIBUTE){CKA_TOKEN, &yes, sizeof yes};
    pubt[np++] = (CK_ATTRIBUTE){CKA_PRIVATE, &no, sizeof no};
    pubt[np++] = (CK_ATTRIBUTE){CKA_VERIFY, &yes, sizeof yes};
    pubt[np++] = (CK_ATTRIBUTE){CKA_LABEL, (void *)label, label_len};
    pubt[np++] = (CK_ATTRIBUTE){CKA_ID, (void *)id, id_len};
    if (kind == 0) {
        pubt[np++] = (CK_ATTRIBUTE){CKA_EC_PARAMS, (void *)p256, sizeof p256};
    } else {
        pubt[np++] = (CK_ATTRIBUTE){CKA_MODULUS_BITS, &bits, sizeof bits};
        pubt[np++] = (CK_ATTRIBUTE){CKA_PUBLIC_EXPONENT, (void *)e65537, sizeof e65537};
    }
    CK_ATTRIBUTE privt[] = {
        {CKA_TOKEN, &yes, sizeof yes},
        {CKA_PRIVATE, &yes, sizeof yes},
        {CKA_SENSITIVE, &yes, sizeof yes},
        {CKA_EXTRACTABLE, &no, sizeof no},
        {CKA_SIGN, &yes, sizeof yes},
        {CKA_LABEL, (void *)label, label_len},
        {CKA_ID, (void *)id, id_len},
    };
    CK_MECHANISM mech = {kind == 0 ? CKM_EC_KEY_PAIR_GEN : CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    return f->C_GenerateKeyPair(s, &mech, pubt, np, privt, sizeof privt / sizeof privt[0], pub, priv);
}

CK_RV cs_p11_find(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls,
                  const unsigned char *id, unsigned long id_len,
                  CK_OBJECT_HANDLE *out, unsigned long max, unsigned long *count) {
    CK_ATTRIBUTE t[2] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_ID, (void *)id, id_len}};
    CK_RV rv = f->C_FindObjectsInit(s, t, id ? 2 : 1);
    if (rv != CKR_OK) return rv;
    CK_ULONG n = 0;
    rv = f->C_FindObjects(s, out, max, &n);
    CK_RV rv2 = f->C_FindObjectsFinal(s);
    *count = n;
    return rv != CKR_OK ? rv : rv2;
}

CK_RV cs_p11_get_attribute(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
                           CK_ATTRIBUTE_TYPE type, void *buf, unsigned long *len) {
    CK_ATTRIBUTE a = {type, buf, buf ? *len : 0};
    CK_RV rv = f->C_GetAttributeValue(s, o, &a, 1);
    *len = a.ulValueLen;
    return rv;
}

static CK_RSA_PKCS_PSS_PARAMS pss_params = {CKM_SHA256, CKG_MGF1_SHA256, 32};

CK_RV cs_p11_sign(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, int kind,
                  const unsigned char *digest, unsigned long digest_len,
                  unsigned char *sig, unsigned long *sig_len) {
    CK_RSA_PKCS_PSS_PARAMS params = pss_params;
    CK_MECHANISM mech;
    if (kind == 0) {
        mech = (CK_MECHANISM){CKM_ECDSA, NULL, 0};
    } else {
        mech = (CK_MECHANISM){CKM_RSA_PKCS_PSS, &params, sizeof params};
    }
    CK_RV rv = f->C_SignInit(s, &mech, key);
    if (rv != CKR_OK) return rv;
    CK_ULONG n = *sig_len;
    rv = f->C_Sign(s, (CK_BYTE_PTR)digest, digest_len, sig, &n);
    *sig_len = n;
    return rv;
}

struct bench_arg {
    CK_FUNCTION_LIST_PTR f;
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE key;
    int kind;
    double seconds;
    unsigned long long count;
    CK_RV rv;
};

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *bench_thread(void *p) {
    struct bench_arg *a = p;
    unsigned char digest[32];
    unsigned char sig[1024];
    for (int i = 0; i < 32; i++) digest[i] = (unsigned char)(i * 7 + 1);
    double end = now_seconds() + a->seconds;
    a->count = 0;
    a->rv = CKR_OK;
    while (1) {
        for (int i = 0; i < 16; i++) {
            unsigned long n = sizeof sig;
            CK_RV rv = cs_p11_sign(a->f, a->s, a->key, a->kind, digest, 32, sig, &n);
            if (rv != CKR_OK) { a->rv = rv; return NULL; }
            a->count++;
        }
        if (now_seconds() >= end) break;
    }
    return NULL;
}

CK_RV cs_p11_bench(CK_FUNCTION_LIST_PTR f, const CK_SESSION_HANDLE *sessions, int threads,
                   CK_OBJECT_HANDLE key, int kind, double seconds,
                   unsigned long long *total, double *elapsed_seconds) {
    if (threads < 1 || threads > 64) return CKR_ARGUMENTS_BAD;
    pthread_t tids[64];
    struct bench_arg args[64];
    double start = now_seconds();
    for (int i = 0; i < threads; i++) {
        args[i] = (struct bench_arg){f, sessions[i], key, kind, seconds, 0, CKR_OK};
        pthread_create(&tids[i], NULL, bench_thread, &args[i]);
    }
    CK_RV result = CKR_OK;
    unsigned long long sum = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(tids[i], NULL);
        sum += args[i].count;
        if (args[i].rv != CKR_OK && result == CKR_OK) result = args[i].rv;
    }
    *elapsed_seconds = now_seconds() - start;
    *total = sum;
    return result;
}
