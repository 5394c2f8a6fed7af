/* A stand-in for libnccl.so.2, for testing the engine's NCCL path without GPUs or NCCL (the simulated GPU of
 * ../shared/gpusim in CI). It implements the part of nccl.h the engine binds and behaves as NCCL does where the
 * engine depends on it:
 *  - init and every collective make the device's primary context current on the calling thread, as NCCL's
 *    cudaSetDevice does; a buffer or stream that belongs to another CUDA context is refused (see check_buffer and
 *    check_stream for the error codes and why);
 *  - all-reduce, broadcast, reduce, all-gather and reduce-scatter (float32; sum, prod, max, min, avg; and the fp16 and
 *    bf16 all-reduce sum of DDP's compression hooks) run among
 *    ranks in separate processes through POSIX shared memory named in the unique id, and device memory is read
 *    and written through whichever libcuda.so.1 the process has loaded;
 *  - a collective whose peers never arrive blocks, as NCCL's kernels spin, until ncclCommAbort is called from
 *    another thread; a peer process that died is reported by ncclCommGetAsyncError as ncclRemoteError (NCCL's
 *    proxy thread notices the closed connection; the kernels keep waiting until the abort);
 *  - ncclCommInitRankConfig with config.blocking = 0 returns ncclInProgress and completes in the background;
 *    ncclCommGetAsyncError says ncclInProgress until it has.
 * It also checks the caller: a communicator used after ncclCommDestroy or ncclCommAbort stops the process with a
 * message (in NCCL that is a use after free).
 *
 * Environment: FAKE_NCCL_INIT=hang makes init never complete (every rank waits until aborted), so that abandoning a
 * hung init can be tested. NCCL_DEBUG=WARN or INFO prints what the library refuses or does, on stderr.
 * fakeNcclStats() reports counters for tests (not part of NCCL's API). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

/* ---- nccl.h's types (the values are NCCL's ABI) ---- */
typedef enum {
  ncclSuccess = 0, ncclUnhandledCudaError = 1, ncclSystemError = 2, ncclInternalError = 3,
  ncclInvalidArgument = 4, ncclInvalidUsage = 5, ncclRemoteError = 6, ncclInProgress = 7,
} ncclResult_t;
typedef enum { ncclFloat16 = 6, ncclFloat32 = 7, ncclBfloat16 = 9 } ncclDataType_t;
typedef enum { ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3, ncclAvg = 4 } ncclRedOp_t;
#define NCCL_UNIQUE_ID_BYTES 128
typedef struct { char internal[NCCL_UNIQUE_ID_BYTES]; } ncclUniqueId;
/* The leading fields of ncclConfig_t, the same in every NCCL since 2.14. */
typedef struct {
  size_t size;
  unsigned int magic;
  unsigned int version;
  int blocking;
} ncclConfigHead;
#define NCCL_CONFIG_MAGIC 0xcafebeef
#define FAKE_NCCL_VERSION 21805 /* reports itself as NCCL 2.18.5 */

/* ---- the CUDA driver API, from the libcuda.so.1 the process has loaded ---- */
typedef int CUresult;
typedef void *CUcontext;
typedef void *CUstream;
typedef unsigned long long CUdeviceptr;
#define CU_POINTER_ATTRIBUTE_CONTEXT 1

static struct {
  CUresult (*DeviceGet)(int *, int);
  CUresult (*DevicePrimaryCtxRetain)(CUcontext *, int);
  CUresult (*DevicePrimaryCtxRelease)(int);
  CUresult (*CtxGetCurrent)(CUcontext *);
  CUresult (*CtxSetCurrent)(CUcontext);
  CUresult (*CtxGetDevice)(int *);
  CUresult (*PointerGetAttribute)(void *, int, CUdeviceptr);
  CUresult (*StreamGetCtx)(CUstream, CUcontext *);
  CUresult (*MemcpyAsync)(CUdeviceptr, CUdeviceptr, size_t, CUstream);
  CUresult (*StreamSynchronize)(CUstream);
} cu;
static pthread_once_t cu_once = PTHREAD_ONCE_INIT;
static const char *cu_error;

enum { LOG_NONE, LOG_WARN, LOG_INFO };
static int log_level(void)
{
  const char *v = getenv("NCCL_DEBUG");
  if (!v) return LOG_NONE;
  if (!strcasecmp(v, "INFO") || !strcasecmp(v, "TRACE")) return LOG_INFO;
  return !strcasecmp(v, "WARN") ? LOG_WARN : LOG_NONE;
}
static void say(int level, const char *fmt, ...)
{
  if (log_level() < level) return;
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  fprintf(stderr, "%d:fake-nccl %s %s\n", (int)getpid(), level == LOG_WARN ? "WARN" : "INFO", line);
}
#define WARN(...) say(LOG_WARN, __VA_ARGS__)
#define INFO(...) say(LOG_INFO, __VA_ARGS__)

static void fatal(const char *what)
{
  fprintf(stderr, "%d:fake-nccl FATAL %s\n", (int)getpid(), what);
  abort();
}

static void load_driver(void)
{
  /* RTLD_NOLOAD first: the driver the process already uses (ILGPU's), whatever folder it came from. */
  void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
  if (!lib) lib = dlopen("libcuda.so.1", RTLD_NOW);
  if (!lib) { cu_error = "libcuda.so.1 could not be loaded"; return; }
#define BIND(field, name) if (!(*(void **)&cu.field = dlsym(lib, name))) { cu_error = "libcuda.so.1 lacks " name; return; }
  BIND(DeviceGet, "cuDeviceGet");
  BIND(DevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
  BIND(DevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2");
  BIND(CtxGetCurrent, "cuCtxGetCurrent");
  BIND(CtxSetCurrent, "cuCtxSetCurrent");
  BIND(CtxGetDevice, "cuCtxGetDevice");
  BIND(PointerGetAttribute, "cuPointerGetAttribute");
  BIND(StreamGetCtx, "cuStreamGetCtx");
  BIND(MemcpyAsync, "cuMemcpyAsync");
  BIND(StreamSynchronize, "cuStreamSynchronize");
#undef BIND
}
static ncclResult_t driver(void)
{
  pthread_once(&cu_once, load_driver);
  if (cu_error) { WARN("%s", cu_error); return ncclUnhandledCudaError; }
  return ncclSuccess;
}
#define CUCHECK(call) do { CUresult r_ = (call); if (r_ != 0) { WARN("%s failed: CUresult %d", #call, r_); return ncclUnhandledCudaError; } } while (0)

/* ---- shared memory: a header, then one slot per rank through which each chunk of a collective travels ---- */
#define MAX_RANKS 64
#define SLOT_BYTES (1u << 20)
#define ID_MAGIC "fake-nccl-id-v1"
struct shared {
  _Atomic int nranks;
  _Atomic int pids[MAX_RANKS];        /* set once a rank has mapped the region */
  _Atomic uint64_t arrived[MAX_RANKS]; /* per rank: the last step it reached (steps only grow) */
};
static size_t shared_bytes(int nranks) { return ((sizeof(struct shared) + 4095) & ~(size_t)4095) + (size_t)nranks * SLOT_BYTES; }
static char *slot(struct shared *s, int rank) { return (char *)s + ((sizeof(struct shared) + 4095) & ~(size_t)4095) + (size_t)rank * SLOT_BYTES; }

struct ncclComm {
  int rank, nranks, device;
  CUcontext primary;
  char name[96];
  struct shared *shm;
  uint64_t step;
  float *scratch;
  _Atomic int aborted;
  _Atomic int async_error;
  _Atomic int users; /* threads inside a call on this communicator */
  pthread_t init_thread;
  int has_init_thread;
};
typedef struct ncclComm *ncclComm_t;

/* Every live communicator, so that a destroyed one is recognised instead of dereferenced. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static ncclComm_t registry[256];
static _Atomic int stat_inits_in_flight, stat_aborts, stat_live;

static int registered(ncclComm_t c)
{
  for (int i = 0; i < 256; i++) if (registry[i] == c && c) return 1;
  return 0;
}
/* Marks a thread as inside a call on c; stops the process if c is not a live communicator. */
static void enter(ncclComm_t c, const char *call)
{
  pthread_mutex_lock(&registry_lock);
  if (!registered(c)) {
    pthread_mutex_unlock(&registry_lock);
    char m[160];
    snprintf(m, sizeof m, "%s on communicator %p, which was destroyed or aborted, or never made (a use after free in NCCL)", call, (void *)c);
    fatal(m);
  }
  atomic_fetch_add(&c->users, 1);
  pthread_mutex_unlock(&registry_lock);
}
static void leave(ncclComm_t c) { atomic_fetch_sub(&c->users, 1); }

static void pause_briefly(unsigned *spins)
{
  if (++*spins < 200) { sched_yield(); return; }
  struct timespec t = {0, *spins < 2000 ? 50000 : 1000000};
  nanosleep(&t, NULL);
}
static double now_s(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

/* A rank whose process has gone: NCCL's proxy sees its connection close and reports ncclRemoteError. */
static void check_peers(ncclComm_t c, uint64_t step)
{
  for (int r = 0; r < c->nranks; r++) {
    int pid = atomic_load(&c->shm->pids[r]);
    if (r == c->rank || !pid || atomic_load(&c->shm->arrived[r]) >= step) continue;
    if (kill(pid, 0) == -1 && errno == ESRCH) {
      int expected = ncclSuccess;
      if (atomic_compare_exchange_strong(&c->async_error, &expected, ncclRemoteError))
        WARN("rank %d: peer rank %d (pid %d) has exited; the communicator must be aborted", c->rank, r, pid);
    }
  }
}

/* Waits until every rank has reached this rank's next step. Blocks like NCCL's kernels: only an abort ends it. */
static ncclResult_t step_together(ncclComm_t c)
{
  uint64_t step = ++c->step;
  atomic_store(&c->shm->arrived[c->rank], step);
  unsigned spins = 0;
  double next_check = now_s() + 0.1;
  for (;;) {
    int all = 1;
    for (int r = 0; r < c->nranks && all; r++) all = atomic_load(&c->shm->arrived[r]) >= step;
    if (all) return ncclSuccess;
    if (atomic_load(&c->aborted)) return ncclInternalError; /* what an operation cut short by ncclCommAbort returns here */
    pause_briefly(&spins);
    if (now_s() > next_check) { check_peers(c, step); next_check = now_s() + 0.1; }
  }
}

/* ---- the calling thread's CUDA context, as cudaSetDevice leaves it ---- */
static ncclResult_t set_device(ncclComm_t c)
{
  CUCHECK(cu.CtxSetCurrent(c->primary));
  return ncclSuccess;
}

/* A buffer must be device memory of the communicator's primary context. Memory the driver does not know is
 * ncclInvalidArgument, as NCCL's own pointer check (CudaPtrCheck) answers. Memory of another context on the same
 * device passes that check in NCCL, and its kernels then fault on the address: the error NCCL returns is a CUDA one,
 * ncclUnhandledCudaError; the fake reports it when the call is made rather than from a faulting kernel. */
static ncclResult_t check_buffer(ncclComm_t c, const void *p, const char *which, const char *call)
{
  CUcontext owner = NULL;
  if (cu.PointerGetAttribute(&owner, CU_POINTER_ATTRIBUTE_CONTEXT, (CUdeviceptr)p) != 0) {
    WARN("%s : %s %p is not a valid device pointer", call, which, p);
    return ncclInvalidArgument;
  }
  if (owner != c->primary) {
    WARN("%s : %s %p belongs to CUDA context %p, not to device %d's primary context %p (illegal address in NCCL's kernel)",
         call, which, p, owner, c->device, c->primary);
    return ncclUnhandledCudaError;
  }
  return ncclSuccess;
}
/* A stream of another context: NCCL's cudaEventRecord / kernel launch on it fails with "invalid resource handle",
 * which NCCL returns as ncclUnhandledCudaError. */
static ncclResult_t check_stream(ncclComm_t c, CUstream stream, const char *call)
{
  CUcontext owner = NULL;
  CUresult r = cu.StreamGetCtx(stream, &owner);
  if (r != 0 || owner != c->primary) {
    WARN("%s : stream %p belongs to CUDA context %p (CUresult %d), not to device %d's primary context %p (invalid resource handle)",
         call, (void *)stream, owner, r, c->device, c->primary);
    return ncclUnhandledCudaError;
  }
  return ncclSuccess;
}

static ncclResult_t to_host(void *dst, const void *src, size_t bytes, CUstream s)
{
  CUCHECK(cu.MemcpyAsync((CUdeviceptr)dst, (CUdeviceptr)src, bytes, s));
  CUCHECK(cu.StreamSynchronize(s));
  return ncclSuccess;
}
#define to_device to_host

/* ---- communicators ---- */
EXPORT ncclResult_t ncclGetVersion(int *version)
{
  if (!version) return ncclInvalidArgument;
  *version = FAKE_NCCL_VERSION;
  return ncclSuccess;
}

EXPORT const char *ncclGetErrorString(ncclResult_t r)
{
  switch (r) {
  case ncclSuccess: return "no error";
  case ncclUnhandledCudaError: return "unhandled cuda error (run with NCCL_DEBUG=INFO for details)";
  case ncclSystemError: return "unhandled system error (run with NCCL_DEBUG=INFO for details)";
  case ncclInternalError: return "internal error - please report this issue to the NCCL developers";
  case ncclInvalidArgument: return "invalid argument (run with NCCL_DEBUG=WARN for details)";
  case ncclInvalidUsage: return "invalid usage (run with NCCL_DEBUG=WARN for details)";
  case ncclRemoteError: return "remote process exited or there was a network error";
  case ncclInProgress: return "NCCL operation in progress";
  default: return "unknown result code";
  }
}

EXPORT ncclResult_t ncclGetUniqueId(ncclUniqueId *id)
{
  if (!id) return ncclInvalidArgument;
  static _Atomic unsigned counter;
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  memset(id, 0, sizeof *id);
  memcpy(id->internal, ID_MAGIC, sizeof ID_MAGIC);
  snprintf(id->internal + 32, 64, "/fake-nccl-%d-%u-%lx", (int)getpid(), atomic_fetch_add(&counter, 1),
           (unsigned long)(t.tv_nsec ^ t.tv_sec));
  return ncclSuccess;
}

/* Maps the shared region and waits for every rank (the init thread of a non-blocking init, or the caller). */
static ncclResult_t rendezvous(ncclComm_t c)
{
  int fd = shm_open(c->name, O_CREAT | O_RDWR, 0600);
  if (fd < 0) { WARN("shm_open %s: %s", c->name, strerror(errno)); return ncclSystemError; }
  size_t bytes = shared_bytes(c->nranks);
  if (ftruncate(fd, (off_t)bytes) != 0) { close(fd); WARN("ftruncate %s: %s", c->name, strerror(errno)); return ncclSystemError; }
  void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (m == MAP_FAILED) { WARN("mmap %s: %s", c->name, strerror(errno)); return ncclSystemError; }
  c->shm = m;
  int zero = 0;
  if (!atomic_compare_exchange_strong(&c->shm->nranks, &zero, c->nranks) && zero != c->nranks) {
    WARN("rank %d was told %d ranks, another rank %d", c->rank, c->nranks, zero);
    return ncclInvalidUsage;
  }
  zero = 0;
  if (!atomic_compare_exchange_strong(&c->shm->pids[c->rank], &zero, (int)getpid())) {
    WARN("rank %d joined twice (pids %d and %d)", c->rank, zero, (int)getpid());
    return ncclInvalidUsage;
  }
  int hang = getenv("FAKE_NCCL_INIT") && !strcmp(getenv("FAKE_NCCL_INIT"), "hang");
  if (hang) INFO("rank %d: FAKE_NCCL_INIT=hang, init waits until aborted", c->rank);
  unsigned spins = 0;
  for (;;) {
    int all = !hang;
    for (int r = 0; r < c->nranks && all; r++) all = atomic_load(&c->shm->pids[r]) != 0;
    if (all) break;
    if (atomic_load(&c->aborted)) return ncclInternalError;
    pause_briefly(&spins);
  }
  /* Every rank has the region mapped: its name is no longer needed. */
  if (c->rank == 0) shm_unlink(c->name);
  INFO("rank %d of %d joined %s on device %d (primary context %p)", c->rank, c->nranks, c->name, c->device, c->primary);
  return ncclSuccess;
}

static void *init_thread(void *arg)
{
  ncclComm_t c = arg;
  ncclResult_t r = rendezvous(c);
  atomic_store(&c->async_error, r);
  atomic_fetch_sub(&stat_inits_in_flight, 1);
  return NULL;
}

static ncclResult_t init(ncclComm_t *out, int nranks, ncclUniqueId id, int rank, int blocking)
{
  if (!out) return ncclInvalidArgument;
  *out = NULL;
  ncclResult_t r = driver();
  if (r != ncclSuccess) return r;
  if (nranks < 1 || nranks > MAX_RANKS || rank < 0 || rank >= nranks) {
    WARN("invalid rank %d of %d (this library supports up to %d ranks)", rank, nranks, MAX_RANKS);
    return ncclInvalidArgument;
  }
  if (memcmp(id.internal, ID_MAGIC, sizeof ID_MAGIC) != 0) {
    WARN("the unique id was not made by ncclGetUniqueId of this library");
    return ncclInvalidArgument;
  }
  ncclComm_t c = calloc(1, sizeof *c);
  if (!c) return ncclSystemError;
  c->rank = rank;
  c->nranks = nranks;
  memcpy(c->name, id.internal + 32, sizeof c->name - 1); /* NUL-terminated by calloc */
  /* cudaSetDevice(the current device): the device of the context current on this thread, else device 0; its
   * primary context becomes current, and stays so after init, as with NCCL. */
  CUcontext current = NULL;
  int device = 0;
  if (cu.CtxGetCurrent(&current) == 0 && current) cu.CtxGetDevice(&device);
  int handle = 0;
  if (cu.DeviceGet(&handle, device) != 0 || cu.DevicePrimaryCtxRetain(&c->primary, handle) != 0) {
    free(c);
    WARN("could not retain device %d's primary context", device);
    return ncclUnhandledCudaError;
  }
  c->device = handle;
  if (set_device(c) != ncclSuccess) { cu.DevicePrimaryCtxRelease(handle); free(c); return ncclUnhandledCudaError; }
  c->scratch = malloc(SLOT_BYTES);
  pthread_mutex_lock(&registry_lock);
  int i = 0;
  while (i < 256 && registry[i]) i++;
  if (i == 256 || !c->scratch) {
    pthread_mutex_unlock(&registry_lock);
    cu.DevicePrimaryCtxRelease(handle);
    free(c->scratch);
    free(c);
    return ncclSystemError;
  }
  registry[i] = c;
  atomic_fetch_add(&stat_live, 1);
  pthread_mutex_unlock(&registry_lock);
  *out = c;
  atomic_fetch_add(&stat_inits_in_flight, 1);
  if (!blocking) {
    atomic_store(&c->async_error, ncclInProgress);
    if (pthread_create(&c->init_thread, NULL, init_thread, c) != 0) {
      atomic_fetch_sub(&stat_inits_in_flight, 1);
      atomic_store(&c->async_error, ncclSystemError);
      return ncclSystemError;
    }
    c->has_init_thread = 1;
    return ncclInProgress;
  }
  atomic_fetch_add(&c->users, 1);
  r = rendezvous(c);
  atomic_fetch_sub(&c->users, 1);
  atomic_fetch_sub(&stat_inits_in_flight, 1);
  atomic_store(&c->async_error, r);
  return r;
}

EXPORT ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank)
{
  return init(comm, nranks, id, rank, 1);
}

EXPORT ncclResult_t ncclCommInitRankConfig(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank, const ncclConfigHead *config)
{
  int blocking = 1;
  if (config) {
    if (config->magic != NCCL_CONFIG_MAGIC || config->size < sizeof(ncclConfigHead)) {
      WARN("ncclCommInitRankConfig: the config was not set from NCCL_CONFIG_INITIALIZER (magic 0x%x, size %zu)", config->magic, config->size);
      return ncclInvalidArgument;
    }
    blocking = config->blocking != 0; /* NCCL_CONFIG_UNDEF_INT (INT_MIN) means the default, blocking */
  }
  return init(comm, nranks, id, rank, blocking);
}

EXPORT ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *error)
{
  if (!error) return ncclInvalidArgument;
  enter(comm, "ncclCommGetAsyncError");
  *error = atomic_load(&comm->async_error);
  leave(comm);
  return ncclSuccess;
}

/* Frees the communicator once no other thread is inside a call on it (an abort first makes them return). */
static ncclResult_t finish(ncclComm_t comm, int abort_it, const char *call)
{
  enter(comm, call);
  pthread_mutex_lock(&registry_lock);
  for (int i = 0; i < 256; i++) if (registry[i] == comm) registry[i] = NULL;
  atomic_fetch_sub(&stat_live, 1);
  pthread_mutex_unlock(&registry_lock);
  if (abort_it) {
    atomic_store(&comm->aborted, 1);
    atomic_fetch_add(&stat_aborts, 1);
  }
  unsigned spins = 0;
  while (atomic_load(&comm->users) > 1) pause_briefly(&spins);
  if (comm->has_init_thread) pthread_join(comm->init_thread, NULL);
  INFO("rank %d: %s", comm->rank, call);
  if (comm->shm) munmap(comm->shm, shared_bytes(comm->nranks));
  shm_unlink(comm->name); /* when init never completed */
  cu.DevicePrimaryCtxRelease(comm->device);
  free(comm->scratch);
  free(comm);
  return ncclSuccess;
}

EXPORT ncclResult_t ncclCommDestroy(ncclComm_t comm)
{
  if (!comm) return ncclSuccess;
  return finish(comm, 0, "ncclCommDestroy");
}

EXPORT ncclResult_t ncclCommAbort(ncclComm_t comm)
{
  if (!comm) return ncclSuccess;
  return finish(comm, 1, "ncclCommAbort");
}

/* Groups: every call here completes before it returns, so a group has nothing to fuse. */
EXPORT ncclResult_t ncclGroupStart(void) { return ncclSuccess; }
EXPORT ncclResult_t ncclGroupEnd(void) { return ncclSuccess; }

/* ---- collectives ---- */
enum kind { ALL_REDUCE, BROADCAST, REDUCE, ALL_GATHER, REDUCE_SCATTER };
static const char *const kind_names[] = {"ncclAllReduce", "ncclBroadcast", "ncclReduce", "ncclAllGather", "ncclReduceScatter"};

/* out[i] = op over ranks of the chunk each rank put at offset `at` of its slot, in rank order (so every rank's
 * result is bit-identical). */
static void combine(ncclComm_t c, ncclRedOp_t op, size_t at, size_t n, float *out)
{
  const float *first = (const float *)slot(c->shm, 0) + at;
  memcpy(out, first, n * sizeof(float));
  for (int q = 1; q < c->nranks; q++) {
    const float *x = (const float *)slot(c->shm, q) + at;
    for (size_t i = 0; i < n; i++) {
      switch (op) {
      case ncclProd: out[i] *= x[i]; break;
      case ncclMax: out[i] = out[i] > x[i] ? out[i] : x[i]; break;
      case ncclMin: out[i] = out[i] < x[i] ? out[i] : x[i]; break;
      default: out[i] += x[i]; break;
      }
    }
  }
  if (op == ncclAvg)
    for (size_t i = 0; i < n; i++) out[i] /= (float)c->nranks;
}

/* ---- 16-bit floats (all-reduce sum only: DDP's fp16 and bf16 compression hooks) ----
 * float32 <-> fp16 / bf16 rounding to nearest, ties to even, as NCCL's half and bfloat16 sums round each addition. */
static float bits_to_float(uint32_t u) { float f; memcpy(&f, &u, sizeof f); return f; }
static uint32_t float_to_bits(float f) { uint32_t u; memcpy(&u, &f, sizeof u); return u; }

static float from16(uint16_t h, ncclDataType_t type)
{
  if (type == ncclBfloat16) return bits_to_float((uint32_t)h << 16);
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  if (exponent == 0) return bits_to_float(float_to_bits((float)mantissa * 5.9604644775390625e-8f) | sign);
  if (exponent == 31) return bits_to_float(sign | 0x7f800000u | (mantissa << 13));
  return bits_to_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

static uint16_t to16(float f, ncclDataType_t type)
{
  uint32_t u = float_to_bits(f);
  if (type == ncclBfloat16) {
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  }
  uint32_t sign = u & 0x80000000u, o;
  u ^= sign;
  if (u >= 0x47800000u) o = u > 0x7f800000u ? 0x7e00u : 0x7c00u;
  else if (u < 0x38800000u) o = float_to_bits(bits_to_float(u) + 0.5f) - 0x3f000000u;
  else o = (u + 0xc8000fffu + ((u >> 13) & 1u)) >> 13;
  return (uint16_t)(o | (sign >> 16));
}

/* A 16-bit all-reduce, chunk by chunk as run() does; the sum goes in rank order, each addition rounded to 16 bits. */
static ncclResult_t run16(ncclComm_t c, const void *send, void *recv, size_t count, ncclDataType_t type, CUstream s)
{
  size_t per_chunk = SLOT_BYTES / sizeof(uint16_t);
  const uint16_t *in = send;
  uint16_t *out = recv, *sum = (uint16_t *)c->scratch;
  ncclResult_t r;
  for (size_t at = 0; at < count; at += per_chunk) {
    size_t n = count - at < per_chunk ? count - at : per_chunk;
    if ((r = to_host(slot(c->shm, c->rank), in + at, n * sizeof(uint16_t), s)) != ncclSuccess) return r;
    if ((r = step_together(c)) != ncclSuccess) return r;
    memcpy(sum, slot(c->shm, 0), n * sizeof(uint16_t));
    for (int q = 1; q < c->nranks; q++) {
      const uint16_t *x = (const uint16_t *)slot(c->shm, q);
      for (size_t i = 0; i < n; i++) sum[i] = to16(from16(sum[i], type) + from16(x[i], type), type);
    }
    if ((r = to_device(out + at, sum, n * sizeof(uint16_t), s)) != ncclSuccess) return r;
    if ((r = step_together(c)) != ncclSuccess) return r;
  }
  return ncclSuccess;
}

/* One collective, chunk by chunk: each rank copies its part of the chunk into its slot, all meet, each computes
 * its result from the slots and writes it to its device buffer, and all meet again before the slots are reused. */
static ncclResult_t run(ncclComm_t c, enum kind kind, const void *send, void *recv, size_t count, ncclRedOp_t op, int root, CUstream s)
{
  size_t per_chunk = SLOT_BYTES / sizeof(float) / (kind == REDUCE_SCATTER ? (size_t)c->nranks : 1);
  const float *in = send;
  float *out = recv;
  ncclResult_t r;
  for (size_t at = 0; at < count; at += per_chunk) {
    size_t n = count - at < per_chunk ? count - at : per_chunk;
    float *mine = (float *)slot(c->shm, c->rank);
    if (kind == REDUCE_SCATTER) {
      for (int q = 0; q < c->nranks; q++)
        if ((r = to_host(mine + (size_t)q * n, in + (size_t)q * count + at, n * sizeof(float), s)) != ncclSuccess) return r;
    } else if (kind != BROADCAST || c->rank == root) {
      if ((r = to_host(mine, in + at, n * sizeof(float), s)) != ncclSuccess) return r;
    }
    if ((r = step_together(c)) != ncclSuccess) return r;
    switch (kind) {
    case ALL_REDUCE:
    case REDUCE:
      if (kind == ALL_REDUCE || c->rank == root) {
        combine(c, op, 0, n, c->scratch);
        r = to_device(out + at, c->scratch, n * sizeof(float), s);
      }
      break;
    case BROADCAST:
      r = to_device(out + at, slot(c->shm, root), n * sizeof(float), s);
      break;
    case ALL_GATHER:
      for (int q = 0; q < c->nranks && r == ncclSuccess; q++)
        r = to_device(out + (size_t)q * count + at, slot(c->shm, q), n * sizeof(float), s);
      break;
    case REDUCE_SCATTER:
      combine(c, op, (size_t)c->rank * n, n, c->scratch);
      r = to_device(out + at, c->scratch, n * sizeof(float), s);
      break;
    }
    if (r != ncclSuccess) return r;
    if ((r = step_together(c)) != ncclSuccess) return r;
  }
  return ncclSuccess;
}

static ncclResult_t collective(enum kind kind, const void *send, void *recv, size_t count, ncclDataType_t type,
                               ncclRedOp_t op, int root, ncclComm_t c, CUstream stream)
{
  const char *call = kind_names[kind];
  enter(c, call);
  ncclResult_t r = ncclSuccess;
  int state = atomic_load(&c->async_error);
  if (state == ncclInProgress) {
    WARN("%s : the communicator's init has not completed", call);
    r = ncclInvalidUsage;
  } else if (atomic_load(&c->aborted)) {
    r = ncclInvalidUsage;
  } else if ((type == ncclFloat16 || type == ncclBfloat16) ? (kind != ALL_REDUCE || op != ncclSum) : (type != ncclFloat32 || (unsigned)op > ncclAvg)) {
    WARN("%s : data type %d / reduction %d: this library implements float32 (sum, prod, max, min, avg) and the fp16 / bf16 all-reduce sum",
         call, (int)type, (int)op);
    r = ncclInvalidArgument;
  } else if ((kind == BROADCAST || kind == REDUCE) && (root < 0 || root >= c->nranks)) {
    WARN("%s : invalid root %d (nranks %d)", call, root, c->nranks);
    r = ncclInvalidArgument;
  } else if (count > 0) {
    /* NCCL calls cudaSetDevice before it launches: the primary context is current on the caller's thread. */
    if ((r = set_device(c)) == ncclSuccess && (r = check_stream(c, stream, call)) == ncclSuccess
        && (r = check_buffer(c, send, "sendbuff", call)) == ncclSuccess && (r = check_buffer(c, recv, "recvbuff", call)) == ncclSuccess) {
      INFO("rank %d: %s count %zu", c->rank, call, count);
      r = type == ncclFloat32 ? run(c, kind, send, recv, count, op, root, stream) : run16(c, send, recv, count, type, stream);
    }
  }
  leave(c);
  return r;
}

EXPORT ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, ncclDataType_t type, ncclRedOp_t op, ncclComm_t comm, CUstream stream)
{
  return collective(ALL_REDUCE, send, recv, count, type, op, 0, comm, stream);
}
EXPORT ncclResult_t ncclBroadcast(const void *send, void *recv, size_t count, ncclDataType_t type, int root, ncclComm_t comm, CUstream stream)
{
  return collective(BROADCAST, send, recv, count, type, ncclSum, root, comm, stream);
}
EXPORT ncclResult_t ncclReduce(const void *send, void *recv, size_t count, ncclDataType_t type, ncclRedOp_t op, int root, ncclComm_t comm, CUstream stream)
{
  return collective(REDUCE, send, recv, count, type, op, root, comm, stream);
}
EXPORT ncclResult_t ncclAllGather(const void *send, void *recv, size_t sendcount, ncclDataType_t type, ncclComm_t comm, CUstream stream)
{
  return collective(ALL_GATHER, send, recv, sendcount, type, ncclSum, 0, comm, stream);
}
EXPORT ncclResult_t ncclReduceScatter(const void *send, void *recv, size_t recvcount, ncclDataType_t type, ncclRedOp_t op, ncclComm_t comm, CUstream stream)
{
  return collective(REDUCE_SCATTER, send, recv, recvcount, type, op, 0, comm, stream);
}

/* For tests, not in NCCL: inits still running (a blocked ncclCommInitRank or a background one), aborts so far,
 * communicators alive. */
EXPORT void fakeNcclStats(int *inits_in_flight, int *aborts, int *live)
{
  if (inits_in_flight) *inits_in_flight = atomic_load(&stat_inits_in_flight);
  if (aborts) *aborts = atomic_load(&stat_aborts);
  if (live) *live = atomic_load(&stat_live);
}
