/*
 * A CPU stand-in for libnccl.so.2 and libcudart.so, for ActorTrain's tests only. It exports the
 * functions ActorTrain.Sync binds, with the same signatures and result codes, so the bindings,
 * the by-value 128-byte unique id, one-thread-per-rank use and the staging layout of NcclCollective
 * can be checked on machines without a GPU. "Device memory" is host memory, streams finish work at
 * once, and a collective runs inside the call: every rank's thread meets the others at a barrier.
 * Build: gcc -shared -fPIC -O1 -pthread -o libnccl.so.2 fake_nccl.c
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct { char internal[128]; } ncclUniqueId;
static const char Magic[8] = "FAKENCCL";

typedef struct Clique {
    char key[128];
    int ranks;
    pthread_barrier_t barrier;
    const float **sends;
    struct Clique *next;
} Clique;

typedef struct { Clique *clique; int rank; } Comm;

static pthread_mutex_t cliques_lock = PTHREAD_MUTEX_INITIALIZER;
static Clique *cliques;
static uint64_t next_id;
static int fail_next_collective;
static __thread int current_device;

/* ---- test control ---- */
void fakeNcclFailNextCollective(int code) { __atomic_store_n(&fail_next_collective, code, __ATOMIC_SEQ_CST); }

/* ---- NCCL ---- */
int ncclGetVersion(int *version) { *version = 22803; return 0; }

const char *ncclGetErrorString(int code) {
    switch (code) {
    case 0: return "no error";
    case 4: return "invalid argument (fake)";
    case 5: return "invalid usage (fake)";
    default: return "fake NCCL error";
    }
}

int ncclGetUniqueId(ncclUniqueId *id) {
    memset(id, 0, sizeof *id);
    memcpy(id->internal, Magic, sizeof Magic);
    uint64_t n = __atomic_add_fetch(&next_id, 1, __ATOMIC_SEQ_CST);
    memcpy(id->internal + 8, &n, sizeof n);
    id->internal[127] = 0x5a;  /* a last byte that a truncated copy would lose */
    return 0;
}

static Clique *clique_for(const char *key, int ranks) {
    pthread_mutex_lock(&cliques_lock);
    Clique *c = cliques;
    while (c && memcmp(c->key, key, 128) != 0) c = c->next;
    if (!c) {
        c = calloc(1, sizeof *c);
        memcpy(c->key, key, 128);
        c->ranks = ranks;
        c->sends = calloc((size_t)ranks, sizeof *c->sends);
        pthread_barrier_init(&c->barrier, NULL, (unsigned)ranks);
        c->next = cliques;
        cliques = c;
    }
    pthread_mutex_unlock(&cliques_lock);
    return c->ranks == ranks ? c : NULL;
}

int ncclCommInitRank(Comm **comm, int nranks, ncclUniqueId id, int rank) {
    if (memcmp(id.internal, Magic, sizeof Magic) != 0 || id.internal[127] != 0x5a) return 4;
    if (nranks < 1 || rank < 0 || rank >= nranks) return 4;
    Clique *c = clique_for(id.internal, nranks);
    if (!c) return 5;
    *comm = calloc(1, sizeof(Comm));
    (*comm)->clique = c;
    (*comm)->rank = rank;
    return 0;
}

int ncclCommInitAll(Comm **comms, int ndev, const int *devlist) {
    (void)devlist;
    ncclUniqueId id;
    ncclGetUniqueId(&id);
    for (int r = 0; r < ndev; r++) {
        int result = ncclCommInitRank(&comms[r], ndev, id, r);
        if (result != 0) return result;
    }
    return 0;
}

int ncclCommDestroy(Comm *comm) { free(comm); return 0; }
int ncclCommAbort(Comm *comm) { free(comm); return 0; }
int ncclCommGetAsyncError(Comm *comm, int *error) { (void)comm; *error = 0; return 0; }
int ncclGroupStart(void) { return 0; }
int ncclGroupEnd(void) { return 0; }

static int take_failure(void) { return __atomic_exchange_n(&fail_next_collective, 0, __ATOMIC_SEQ_CST); }

/* Every rank publishes its send buffer, computes its result into a temporary, waits until all have
   read, then writes its receive buffer: in-place calls stay correct. */
static float *gather_inputs(Comm *comm, const void *send, size_t count) {
    Clique *c = comm->clique;
    c->sends[comm->rank] = send;
    pthread_barrier_wait(&c->barrier);
    return malloc((count ? count : 1) * sizeof(float));
}

static void finish(Comm *comm, void *recv, float *result, size_t count) {
    pthread_barrier_wait(&comm->clique->barrier);
    memcpy(recv, result, count * sizeof(float));
    free(result);
}

int ncclAllReduce(const void *send, void *recv, size_t count, int type, int op, Comm *comm, void *stream) {
    (void)stream;
    int failure = take_failure();
    if (failure) return failure;
    if (type != 7 || op != 0) return 4;
    float *out = gather_inputs(comm, send, count);
    for (size_t i = 0; i < count; i++) {
        float sum = 0;
        for (int r = 0; r < comm->clique->ranks; r++) sum += comm->clique->sends[r][i];
        out[i] = sum;
    }
    finish(comm, recv, out, count);
    return 0;
}

int ncclReduceScatter(const void *send, void *recv, size_t recvcount, int type, int op, Comm *comm, void *stream) {
    (void)stream;
    int failure = take_failure();
    if (failure) return failure;
    if (type != 7 || op != 0) return 4;
    float *out = gather_inputs(comm, send, recvcount);
    for (size_t i = 0; i < recvcount; i++) {
        float sum = 0;
        for (int r = 0; r < comm->clique->ranks; r++) sum += comm->clique->sends[r][(size_t)comm->rank * recvcount + i];
        out[i] = sum;
    }
    finish(comm, recv, out, recvcount);
    return 0;
}

int ncclAllGather(const void *send, void *recv, size_t sendcount, int type, Comm *comm, void *stream) {
    (void)stream;
    int failure = take_failure();
    if (failure) return failure;
    if (type != 7) return 4;
    int ranks = comm->clique->ranks;
    float *out = gather_inputs(comm, send, sendcount * (size_t)ranks);
    for (int r = 0; r < ranks; r++) memcpy(out + (size_t)r * sendcount, comm->clique->sends[r], sendcount * sizeof(float));
    finish(comm, recv, out, sendcount * (size_t)ranks);
    return 0;
}

int ncclBroadcast(const void *send, void *recv, size_t count, int type, int root, Comm *comm, void *stream) {
    (void)stream;
    int failure = take_failure();
    if (failure) return failure;
    if (type != 7 || root < 0 || root >= comm->clique->ranks) return 4;
    float *out = gather_inputs(comm, send, count);
    memcpy(out, comm->clique->sends[root], count * sizeof(float));
    finish(comm, recv, out, count);
    return 0;
}

/* ---- CUDA runtime ---- */
int cudaGetDeviceCount(int *count) { *count = 4; return 0; }
int cudaSetDevice(int device) { if (device < 0 || device >= 4) return 101; current_device = device; return 0; }
int cudaMalloc(void **pointer, size_t size) { *pointer = malloc(size ? size : 1); return *pointer ? 0 : 2; }
int cudaFree(void *pointer) { free(pointer); return 0; }
int cudaMemcpy(void *dst, const void *src, size_t count, int kind) { if (kind < 0 || kind > 4) return 21; memmove(dst, src, count); return 0; }
int cudaMemset(void *pointer, int value, size_t count) { memset(pointer, value, count); return 0; }
int cudaStreamCreate(void **stream) { *stream = malloc(1); return 0; }
int cudaStreamDestroy(void *stream) { free(stream); return 0; }
int cudaStreamSynchronize(void *stream) { (void)stream; return 0; }
int cudaStreamQuery(void *stream) { (void)stream; return 0; }
const char *cudaGetErrorString(int code) { return code == 0 ? "no error" : "fake CUDA error"; }
const char *cudaGetErrorName(int code) { return code == 0 ? "cudaSuccess" : "cudaErrorFake"; }
int cudaRuntimeGetVersion(int *version) { *version = 13000; return 0; }
int cudaDriverGetVersion(int *version) { *version = 13000; return 0; }
