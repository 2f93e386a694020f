// The exit gate: a process must never exit while one of its threads is inside the PKCS#11 module.
//
// At exit, SoftHSM's static destructors and OpenSSL's atexit cleanup free the token's state and
// the library's; a thread still inside C_Sign (another connection's decision, a checkpoint, the
// signer's health probe) then runs on freed memory, and the process dies with "double free or
// corruption" or a segmentation fault instead of its exit status. Measured with a C program that
// calls exit() while one thread signs in a loop: 60 crashes in 100 runs; none without the thread.
//
// So every call the product makes goes through a wrapper that counts the threads inside, and the
// first successful C_Initialize registers an exit handler that runs before those destructors
// (exit handlers run in the reverse order of their registration; SoftHSM's were registered when it
// was loaded and OpenSSL's during C_Initialize). The handler closes the gate, waits for the calls
// under way to return (at most cs_p11_exit_wait_seconds), finalises the module while OpenSSL is
// still intact, and lets the exit go on. A thread that reaches the gate after it closed never
// enters the module again: it waits until the process is gone. Should a call not return in time
// (a hung network HSM), the process ends at once with its exit status (_exit), skipping the
// destructors that would crash.
//
// One module per process is gated (PKCS#11 state is process-wide, and the product uses one).
#include "CPKCS11.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static CK_FUNCTION_LIST_PTR real;
static CK_FUNCTION_LIST gated;
static atomic_ulong inside;
static atomic_int closed;
static atomic_int handler_registered;

static const double cs_p11_exit_wait_seconds = 10;

static inline void enter(void) {
    atomic_fetch_add(&inside, 1);
    if (atomic_load(&closed)) {
        atomic_fetch_sub(&inside, 1);
        for (;;) pause();  // the process is exiting: this thread ends with it
    }
}

static inline void leave(void) { atomic_fetch_sub(&inside, 1); }

#define GATED(name, params, args)                                                                  \
    static CK_RV gated_##name params {                                                             \
        enter();                                                                                   \
        CK_RV rv = real->name args;                                                                \
        leave();                                                                                   \
        return rv;                                                                                 \
    }

GATED(C_Initialize, (void *a), (a))
GATED(C_Finalize, (void *r), (r))
GATED(C_GetInfo, (CK_INFO_PTR i), (i))
GATED(C_GetSlotList, (CK_BBOOL p, CK_SLOT_ID_PTR l, CK_ULONG_PTR n), (p, l, n))
GATED(C_GetSlotInfo, (CK_SLOT_ID s, CK_SLOT_INFO_PTR i), (s, i))
GATED(C_GetTokenInfo, (CK_SLOT_ID s, CK_TOKEN_INFO_PTR i), (s, i))
GATED(C_SetPIN, (CK_SESSION_HANDLE s, CK_UTF8CHAR_PTR o, CK_ULONG ol, CK_UTF8CHAR_PTR n, CK_ULONG nl), (s, o, ol, n, nl))
GATED(C_OpenSession, (CK_SLOT_ID s, CK_FLAGS f, CK_VOID_PTR a, CK_NOTIFY n, CK_SESSION_HANDLE_PTR h), (s, f, a, n, h))
GATED(C_CloseSession, (CK_SESSION_HANDLE s), (s))
GATED(C_CloseAllSessions, (CK_SLOT_ID s), (s))
GATED(C_GetSessionInfo, (CK_SESSION_HANDLE s, CK_SESSION_INFO_PTR i), (s, i))
GATED(C_Login, (CK_SESSION_HANDLE s, CK_USER_TYPE u, CK_UTF8CHAR_PTR p, CK_ULONG n), (s, u, p, n))
GATED(C_Logout, (CK_SESSION_HANDLE s), (s))
GATED(C_DestroyObject, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o), (s, o))
GATED(C_CopyObject, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR h), (s, o, t, n, h))
GATED(C_GetAttributeValue, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n), (s, o, t, n))
GATED(C_FindObjectsInit, (CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR t, CK_ULONG n), (s, t, n))
GATED(C_FindObjects, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE_PTR o, CK_ULONG m, CK_ULONG_PTR n), (s, o, m, n))
GATED(C_FindObjectsFinal, (CK_SESSION_HANDLE s), (s))
GATED(C_SignInit, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k), (s, m, k))
GATED(C_Sign, (CK_SESSION_HANDLE s, CK_BYTE_PTR d, CK_ULONG dl, CK_BYTE_PTR g, CK_ULONG_PTR gl), (s, d, dl, g, gl))
GATED(C_GenerateKeyPair,
      (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR pt, CK_ULONG pn, CK_ATTRIBUTE_PTR kt, CK_ULONG kn,
       CK_OBJECT_HANDLE_PTR pub, CK_OBJECT_HANDLE_PTR priv),
      (s, m, pt, pn, kt, kn, pub, priv))

static CK_RV gated_C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list) {
    if (list == NULL) return CKR_ARGUMENTS_BAD;
    *list = &gated;
    return CKR_OK;
}

/// A function the product does not call: refused rather than let past the gate. It stands in for
/// entries of every signature; with the System V calling convention the caller's arguments are
/// simply ignored.
static CK_RV not_supported(void) { return CKR_FUNCTION_NOT_SUPPORTED; }

static pthread_mutex_t setup = PTHREAD_MUTEX_INITIALIZER;

CK_RV cs_p11_gate(CK_FUNCTION_LIST_PTR module, CK_FUNCTION_LIST_PTR *gated_list) {
    pthread_mutex_lock(&setup);
    if (real != NULL && real != module) {
        pthread_mutex_unlock(&setup);
        return CKR_GENERAL_ERROR;  // one module per process
    }
    if (real == NULL) {
        real = module;
        gated = *module;  // the version, and the entries overwritten below
        CK_FUNCTION_LIST_PTR g = &gated;
        // Every entry first refuses; the calls the product makes are then wrapped.
        CK_VOID_PTR *entry = (CK_VOID_PTR *)((char *)g + offsetof(CK_FUNCTION_LIST, C_Initialize));
        CK_VOID_PTR *end = (CK_VOID_PTR *)((char *)g + sizeof(CK_FUNCTION_LIST));
        for (; entry < end; entry++) *entry = (CK_VOID_PTR)not_supported;
        g->C_Initialize = gated_C_Initialize;
        g->C_Finalize = gated_C_Finalize;
        g->C_GetInfo = gated_C_GetInfo;
        g->C_GetFunctionList = gated_C_GetFunctionList;
        g->C_GetSlotList = gated_C_GetSlotList;
        g->C_GetSlotInfo = gated_C_GetSlotInfo;
        g->C_GetTokenInfo = gated_C_GetTokenInfo;
        g->C_SetPIN = gated_C_SetPIN;
        g->C_OpenSession = gated_C_OpenSession;
        g->C_CloseSession = gated_C_CloseSession;
        g->C_CloseAllSessions = gated_C_CloseAllSessions;
        g->C_GetSessionInfo = gated_C_GetSessionInfo;
        g->C_Login = gated_C_Login;
        g->C_Logout = gated_C_Logout;
        g->C_DestroyObject = gated_C_DestroyObject;
        g->C_CopyObject = gated_C_CopyObject;
        g->C_GetAttributeValue = gated_C_GetAttributeValue;
        g->C_FindObjectsInit = gated_C_FindObjectsInit;
        g->C_FindObjects = gated_C_FindObjects;
        g->C_FindObjectsFinal = gated_C_FindObjectsFinal;
        g->C_SignInit = gated_C_SignInit;
        g->C_Sign = gated_C_Sign;
        g->C_GenerateKeyPair = gated_C_GenerateKeyPair;
    }
    pthread_mutex_unlock(&setup);
    *gated_list = &gated;
    return CKR_OK;
}

static void close_gate(int status, void *unused) {
    (void)unused;
    atomic_store(&closed, 1);
    struct timespec step = {0, 1000000};  // 1 ms
    long waited = 0;
    while (atomic_load(&inside) != 0) {
        if (waited >= (long)(cs_p11_exit_wait_seconds * 1000)) {
            fprintf(stderr, "countersign: a PKCS#11 call was still running %.0f s into the process exit; "
                            "ending without finalising the module\n", cs_p11_exit_wait_seconds);
            fflush(NULL);
            _exit(status);
        }
        nanosleep(&step, NULL);
        waited++;
    }
    // Nobody is inside, nobody can enter: finalise while OpenSSL is still intact.
    (void)real->C_Finalize(NULL);
}

#if defined(__GLIBC__)
static void register_handler(void) { on_exit(close_gate, NULL); }
#else
// Without glibc's on_exit the handler does not learn the exit status: should a call never return,
// the process ends with status 1.
static void close_gate_atexit(void) { close_gate(1, NULL); }
static void register_handler(void) { atexit(close_gate_atexit); }
#endif

void cs_p11_register_exit_gate(void) {
    int expected = 0;
    if (!atomic_compare_exchange_strong(&handler_registered, &expected, 1)) return;
    register_handler();
}
