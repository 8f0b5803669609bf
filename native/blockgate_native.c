// blockgate_native: the few Linux file/block-device system calls Node's fs
// module does not expose, as asynchronous operations on the libuv thread pool
// (napi_async_work: the event loop never blocks on them).
//
// Every function takes an fd the caller owns and returns a Promise. Failures
// reject with an Error shaped like Node's fs errors: code ('EOPNOTSUPP'),
// errno (negative, as libuv), syscall. Offsets and lengths are JS numbers
// (safe integers, validated here: non-negative, <= 2^53).
//
//   seekData(fd, off)  / seekHole(fd, off)  lseek SEEK_DATA / SEEK_HOLE; -1 on ENXIO
//   scanExtents(fd, off, len, maxCount)     SEEK_DATA/SEEK_HOLE loop in one hop:
//                                           Float64Array [start, length, isData]*
//   punchHole(fd, off, len)                 fallocate(PUNCH_HOLE|KEEP_SIZE)
//   zeroRange(fd, off, len)                 fallocate(ZERO_RANGE|KEEP_SIZE)
//   allocate(fd, off, len)                  fallocate(KEEP_SIZE) (mode 0)
//   blkZeroOut(fd, off, len)                ioctl BLKZEROOUT
//   blkDiscard(fd, off, len)                ioctl BLKDISCARD
//   blockDeviceSize(fd)                     ioctl BLKGETSIZE64
//   fadvise(fd, off, len, advice)           posix_fadvise (advice: 0..5 as POSIX_FADV_*)
//
// And two SYNCHRONOUS calls that never wait for I/O (RWF_NOWAIT): they copy
// from/to the page cache on the calling thread when that is possible at once,
// and return -1 (EAGAIN) otherwise, so the caller goes to the thread pool.
// This saves the thread-pool round trip (two context switches) on cache hits.
//   preadNoWait(fd, buffer, bufOff, len, pos)   preadv2(RWF_NOWAIT): bytes read or -1
//   pwriteNoWait(fd, buffer, bufOff, len, pos)  pwritev2(RWF_NOWAIT): bytes written or -1
//
// And one CPU job on the thread pool, zero-copy:
//   sha256(buffer)          Promise<Buffer> (32 bytes): SHA-256 of the bytes,
//                           read in place (the Buffer is kept alive, not copied;
//                           the caller must not modify it until the promise
//                           settles). OpenSSL's one-shot SHA256 as exported by
//                           the Node binary; `sha256` is absent from the
//                           exports when this Node does not export it.
//
// And one asynchronous read that also checks what it read (the chunk cache's
// slot reads), so the checksum work runs on the thread pool, not the event
// loop, for several slot reads in ONE thread-pool job (each job costs the
// event loop a queue + wake-up, ~25 us on a VM):
//   preadVerify(fd, segments, unitBytes)
//       segments: a flat array [buffer, length, position, crcs, firstUnit]*
//       (at most 1024 segments). For each: pread all of length into buffer
//       (EIO on end of file), then CRC32C of each unitBytes unit of it (the
//       last may be short) against crcs[firstUnit + i]. Resolves a
//       Float64Array [result, errno]* per segment: result -1 when all units
//       match, else the index of the first mismatch; errno 0, or the errno of
//       a failed read (then result is -1). Buffers and crcs are kept alive.
//   crc32c(buffer, initial = 0)   synchronous CRC32C (Castagnoli) continuing from
//                                 `initial`: AVX-512 folding / SSE4.2 / tables by CPU
//
// State: none. Each call allocates one Work (HashWork, VerifyWork) record, freed in complete().

#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <pthread.h>
#include <sys/uio.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define MAX_SAFE_INTEGER 9007199254740991LL
#define MAX_SCAN_EXTENTS 65536

typedef enum {
  OP_SEEK_DATA,
  OP_SEEK_HOLE,
  OP_SCAN,
  OP_PUNCH,
  OP_ZERO_RANGE,
  OP_ALLOCATE,
  OP_BLK_ZEROOUT,
  OP_BLK_DISCARD,
  OP_BLK_SIZE,
  OP_FADVISE,
} Op;

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  Op op;
  int fd;
  int64_t offset;
  int64_t length;
  int64_t arg; /* fadvise advice, scan max count */
  /* results */
  int err; /* errno, 0 on success */
  const char *syscall;
  int64_t result;
  double *extents; /* OP_SCAN: triples */
  size_t extent_count;
} Work;

/* ---- CRC32C (Castagnoli, reflected 0x82F63B78), as @node-rs/crc32's crc32c ---- */

static uint32_t crc_table[8][256];
/* Which CRC32C code runs: 0 table (slicing-by-8), 1 SSE4.2 crc32, 2 AVX-512 VPCLMULQDQ folding. */
static int crc_hw;
/* Appending CRC_SPAN zero bytes to a CRC register, as four byte-indexed tables (a GF(2) linear map). */
#define CRC_SPAN 256
static uint32_t crc_span_tab[4][256];

static uint32_t gf2_times(const uint32_t mat[32], uint32_t vec) {
  uint32_t sum = 0;
  for (int i = 0; vec; i++, vec >>= 1) if (vec & 1) sum ^= mat[i];
  return sum;
}

static void gf2_square(uint32_t out[32], const uint32_t mat[32]) {
  for (int i = 0; i < 32; i++) out[i] = gf2_times(mat, mat[i]);
}

/* The operator "append n zero bytes" (n >= 1) on a reflected CRC32C register. */
static void crc_zeros_op(uint32_t op[32], size_t n) {
  uint32_t sq[32], tmp[32];
  sq[0] = 0x82F63B78u; /* one zero bit */
  for (int i = 1; i < 32; i++) sq[i] = 1u << (i - 1);
  gf2_square(tmp, sq); gf2_square(sq, tmp); gf2_square(tmp, sq); /* 8 bits */
  memcpy(sq, tmp, sizeof sq);
  int have = 0;
  for (;;) { /* op = product of sq^(2^k) over the set bits k of n */
    if (n & 1) {
      if (!have) { memcpy(op, sq, sizeof sq); have = 1; }
      else { for (int i = 0; i < 32; i++) tmp[i] = gf2_times(sq, op[i]); memcpy(op, tmp, sizeof tmp); }
    }
    n >>= 1;
    if (!n) break;
    gf2_square(tmp, sq);
    memcpy(sq, tmp, sizeof sq);
  }
}

static uint32_t crc_span_shift(uint32_t c) {
  return crc_span_tab[0][c & 0xff] ^ crc_span_tab[1][(c >> 8) & 0xff] ^ crc_span_tab[2][(c >> 16) & 0xff] ^ crc_span_tab[3][c >> 24];
}
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_setup(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    crc_table[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; i++) {
    for (int t = 1; t < 8; t++) crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
  }
  uint32_t op[32];
  crc_zeros_op(op, CRC_SPAN);
  for (uint32_t b = 0; b < 256; b++) {
    for (int k = 0; k < 4; k++) crc_span_tab[k][b] = gf2_times(op, b << (8 * k));
  }
#if defined(__x86_64__)
  __builtin_cpu_init();
  crc_hw = __builtin_cpu_supports("sse4.2");
  if (crc_hw && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("vpclmulqdq")) crc_hw = 2;
  /* BLOCKGATE_NATIVE_CRC=sse42|table caps it (benchmarks, tests of each path). */
  const char *cap = getenv("BLOCKGATE_NATIVE_CRC");
  if (cap && strcmp(cap, "sse42") == 0 && crc_hw > 1) crc_hw = 1;
  if (cap && strcmp(cap, "table") == 0) crc_hw = 0;
#endif
}

/* Slicing-by-8 (no CRC instruction). */
static uint32_t crc_sw(uint32_t c, const uint8_t *p, size_t n) {
  while (n >= 8) {
    uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
    c = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^ crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
        crc_table[3][p[4]] ^ crc_table[2][p[5]] ^ crc_table[1][p[6]] ^ crc_table[0][p[7]];
    p += 8;
    n -= 8;
  }
  while (n--) c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xff];
  return c;
}

#if defined(__x86_64__)
/*
 * SSE4.2 crc32 instruction, 8 bytes at a time. The instruction has a latency
 * of 3 cycles but can issue every cycle, so blocks of 3 x CRC_SPAN bytes run
 * as three independent chains (the 2nd and 3rd starting from 0) and are
 * joined by linearity: crc(A|B) = shift(crc(A), |B|) ^ crc0(B).
 */
__attribute__((target("sse4.2"))) static uint32_t crc_x86(uint32_t c32, const uint8_t *p, size_t n) {
  while (n >= 3 * CRC_SPAN) {
    uint64_t a = c32, b = 0, c = 0;
    for (size_t i = 0; i < CRC_SPAN; i += 8) {
      uint64_t va, vb, vc;
      memcpy(&va, p + i, 8);
      memcpy(&vb, p + CRC_SPAN + i, 8);
      memcpy(&vc, p + 2 * CRC_SPAN + i, 8);
      a = __builtin_ia32_crc32di(a, va);
      b = __builtin_ia32_crc32di(b, vb);
      c = __builtin_ia32_crc32di(c, vc);
    }
    c32 = crc_span_shift(crc_span_shift((uint32_t)a) ^ (uint32_t)b) ^ (uint32_t)c;
    p += 3 * CRC_SPAN;
    n -= 3 * CRC_SPAN;
  }
  uint64_t c = c32;
  while (n >= 8) {
    uint64_t v;
    memcpy(&v, p, 8);
    c = __builtin_ia32_crc32di(c, v);
    p += 8;
    n -= 8;
  }
  uint32_t r = (uint32_t)c;
  while (n--) r = __builtin_ia32_crc32qi(r, *p++);
  return r;
}

/*
 * AVX-512 VPCLMULQDQ: four 512-bit accumulators (16 lanes of 128 bits) fold
 * the message forward 256 bytes per step by carry-less multiplication,
 * x * x^D mod P with D = 2048 bits; then the accumulators fold into one
 * (D = 512) and its 64 bytes, followed by the tail, go through crc_x86 from
 * 0. Fold constants per 128-bit lane: low half x^(D+31) mod P, high half
 * x^(D-33) mod P, bit-reflected (checked against the other paths by the
 * addon's tests). ~2.3x the SSE4.2 path (56 vs 25 GB/s on 1 MiB here). Needs n >= 256.
 */
__attribute__((target("avx512f,avx512vl,vpclmulqdq,sse4.2")))
static uint32_t crc_avx512(uint32_t c32, const uint8_t *p, size_t n) {
  const __m512i k2048 = _mm512_broadcast_i32x4(_mm_set_epi64x(0xb9e02b86, 0xdcb17aa4));
  const __m512i k512 = _mm512_broadcast_i32x4(_mm_set_epi64x(0x9e4addf8, 0x740eef02));
#define FOLD(acc, k, data) _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(acc, k, 0x00), _mm512_clmulepi64_epi128(acc, k, 0x11), data, 0x96)
  __m512i a0 = _mm512_xor_si512(_mm512_loadu_si512(p), _mm512_zextsi128_si512(_mm_cvtsi32_si128((int)c32)));
  __m512i a1 = _mm512_loadu_si512(p + 64), a2 = _mm512_loadu_si512(p + 128), a3 = _mm512_loadu_si512(p + 192);
  p += 256;
  n -= 256;
  while (n >= 256) {
    a0 = FOLD(a0, k2048, _mm512_loadu_si512(p));
    a1 = FOLD(a1, k2048, _mm512_loadu_si512(p + 64));
    a2 = FOLD(a2, k2048, _mm512_loadu_si512(p + 128));
    a3 = FOLD(a3, k2048, _mm512_loadu_si512(p + 192));
    p += 256;
    n -= 256;
  }
  a1 = FOLD(a0, k512, a1);
  a2 = FOLD(a1, k512, a2);
  a3 = FOLD(a2, k512, a3);
#undef FOLD
  uint8_t last[64];
  _mm512_storeu_si512(last, a3);
  return crc_x86(crc_x86(0, last, sizeof last), p, n);
}

#endif

/* CRC32C of p[0..n) continuing from `initial` (the CRC of the bytes before). */
static uint32_t crc32c_from(uint32_t initial, const uint8_t *p, size_t n) {
  pthread_once(&crc_once, crc_setup);
#if defined(__x86_64__)
  if (crc_hw == 2 && n >= 256) return ~crc_avx512(~initial, p, n);
  if (crc_hw) return ~crc_x86(~initial, p, n);
#endif
  return ~crc_sw(~initial, p, n);
}

static uint32_t crc32c(const uint8_t *p, size_t n) { return crc32c_from(0, p, n); }

static int do_fallocate(Work *w, int mode) {
  w->syscall = "fallocate";
  for (;;) {
    if (fallocate(w->fd, mode, (off_t)w->offset, (off_t)w->length) == 0) return 0;
    if (errno != EINTR) return errno;
  }
}

static int do_ioctl_range(Work *w, unsigned long req, const char *name) {
  uint64_t range[2] = {(uint64_t)w->offset, (uint64_t)w->length};
  w->syscall = name;
  for (;;) {
    if (ioctl(w->fd, req, range) == 0) return 0;
    if (errno != EINTR) return errno;
  }
}

static int do_scan(Work *w) {
  int64_t pos = w->offset;
  int64_t end = w->offset + w->length;
  size_t cap = 16, n = 0;
  int64_t max = w->arg;
  double *out = malloc(cap * 3 * sizeof(double));
  if (!out) return ENOMEM;
  w->syscall = "lseek";
  while (pos < end && (int64_t)n < max) {
    off_t data = lseek(w->fd, (off_t)pos, SEEK_DATA);
    int64_t start, stop;
    int is_data;
    if (data < 0) {
      if (errno == ENXIO) { /* no data at or after pos: hole to EOF */
        start = pos; stop = end; is_data = 0;
      } else { int e = errno; free(out); return e; }
    } else if (data > pos) {
      start = pos; stop = data < end ? data : end; is_data = 0;
    } else {
      off_t hole = lseek(w->fd, (off_t)pos, SEEK_HOLE);
      if (hole < 0) {
        if (errno == ENXIO) hole = end; /* raced with a truncate: treat as data */
        else { int e = errno; free(out); return e; }
      }
      if (hole <= pos) hole = end; /* defensive: never loop without progress */
      start = pos; stop = hole < end ? hole : end; is_data = 1;
    }
    if (n == cap) {
      double *grown = realloc(out, cap * 2 * 3 * sizeof(double));
      if (!grown) { free(out); return ENOMEM; }
      out = grown; cap *= 2;
    }
    /* merge with previous extent of the same kind (cannot normally happen) */
    if (n > 0 && (int)out[(n - 1) * 3 + 2] == is_data) {
      out[(n - 1) * 3 + 1] += (double)(stop - start);
    } else {
      out[n * 3] = (double)start;
      out[n * 3 + 1] = (double)(stop - start);
      out[n * 3 + 2] = is_data;
      n++;
    }
    pos = stop;
  }
  w->extents = out;
  w->extent_count = n;
  return 0;
}

static void execute(napi_env env, void *data) {
  (void)env;
  Work *w = data;
  switch (w->op) {
    case OP_SEEK_DATA:
    case OP_SEEK_HOLE: {
      w->syscall = "lseek";
      off_t r = lseek(w->fd, (off_t)w->offset, w->op == OP_SEEK_DATA ? SEEK_DATA : SEEK_HOLE);
      if (r < 0) {
        if (errno == ENXIO) w->result = -1;
        else w->err = errno;
      } else {
        w->result = r;
      }
      break;
    }
    case OP_SCAN: w->err = do_scan(w); break;
    case OP_PUNCH: w->err = do_fallocate(w, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE); break;
    case OP_ZERO_RANGE: w->err = do_fallocate(w, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE); break;
    case OP_ALLOCATE: w->err = do_fallocate(w, FALLOC_FL_KEEP_SIZE); break;
    case OP_BLK_ZEROOUT: w->err = do_ioctl_range(w, BLKZEROOUT, "ioctl(BLKZEROOUT)"); break;
    case OP_BLK_DISCARD: w->err = do_ioctl_range(w, BLKDISCARD, "ioctl(BLKDISCARD)"); break;
    case OP_BLK_SIZE: {
      uint64_t size = 0;
      w->syscall = "ioctl(BLKGETSIZE64)";
      if (ioctl(w->fd, BLKGETSIZE64, &size) < 0) w->err = errno;
      else w->result = (int64_t)size;
      break;
    }
    case OP_FADVISE:
      w->syscall = "posix_fadvise";
      w->err = posix_fadvise(w->fd, (off_t)w->offset, (off_t)w->length, (int)w->arg);
      break;
  }
}

static napi_value make_errno_error(napi_env env, int err, const char *syscall) {
  const char *name = strerrorname_np(err);
  char code_buf[32];
  if (!name) { snprintf(code_buf, sizeof code_buf, "E%d", err); name = code_buf; }
  char msg[256];
  snprintf(msg, sizeof msg, "%s, %s: %s", name, syscall ? syscall : "?", strerror(err));
  napi_value code, message, error, errno_v, syscall_v;
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &error);
  napi_create_int32(env, -err, &errno_v);
  napi_set_named_property(env, error, "errno", errno_v);
  napi_create_string_utf8(env, syscall ? syscall : "?", NAPI_AUTO_LENGTH, &syscall_v);
  napi_set_named_property(env, error, "syscall", syscall_v);
  return error;
}

static void complete(napi_env env, napi_status status, void *data) {
  Work *w = data;
  if (status != napi_ok) {
    napi_value error = make_errno_error(env, ECANCELED, "async_work");
    napi_reject_deferred(env, w->deferred, error);
  } else if (w->err != 0) {
    napi_reject_deferred(env, w->deferred, make_errno_error(env, w->err, w->syscall));
  } else {
    napi_value result;
    if (w->op == OP_SCAN) {
      size_t count = w->extent_count * 3;
      void *buf = NULL;
      napi_value ab;
      napi_create_arraybuffer(env, count * sizeof(double), &buf, &ab);
      if (count) memcpy(buf, w->extents, count * sizeof(double));
      napi_create_typedarray(env, napi_float64_array, count, ab, 0, &result);
    } else if (w->op == OP_SEEK_DATA || w->op == OP_SEEK_HOLE || w->op == OP_BLK_SIZE) {
      napi_create_double(env, (double)w->result, &result);
    } else {
      napi_get_undefined(env, &result);
    }
    napi_resolve_deferred(env, w->deferred, result);
  }
  napi_delete_async_work(env, w->work);
  free(w->extents);
  free(w);
}

static int get_int64_arg(napi_env env, napi_value v, const char *what, int64_t min, int64_t *out) {
  napi_valuetype t;
  double d;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) goto bad;
  napi_get_value_double(env, v, &d);
  if (!(d >= (double)min) || d > (double)MAX_SAFE_INTEGER || d != (double)(int64_t)d) goto bad;
  *out = (int64_t)d;
  return 1;
bad: {
    char msg[128];
    snprintf(msg, sizeof msg, "%s must be an integer >= %lld", what, (long long)min);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return 0;
  }
}

/* The bytes of a Buffer (or Uint8Array) argument; throws a TypeError and returns 0 otherwise. */
static int get_buffer_arg(napi_env env, napi_value v, void **data, size_t *len) {
  bool is_buffer = false;
  if (v != NULL) napi_is_buffer(env, v, &is_buffer);
  if (!is_buffer || napi_get_buffer_info(env, v, data, len) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "buffer must be a Buffer or Uint8Array");
    return 0;
  }
  return 1;
}

/* Parses (fd, [offset, [length, [arg]]]) per `nargs`, queues the work, returns the promise. */
static napi_value start(napi_env env, napi_callback_info info, Op op, size_t nargs, const char *resource) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < nargs) {
    napi_throw_type_error(env, "ERR_MISSING_ARGS", "missing arguments");
    return NULL;
  }
  int64_t fd = 0, offset = 0, length = 0, arg = 0;
  if (!get_int64_arg(env, argv[0], "fd", 0, &fd)) return NULL;
  if (fd > INT32_MAX) { napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "fd out of range"); return NULL; }
  if (nargs > 1 && !get_int64_arg(env, argv[1], "offset", 0, &offset)) return NULL;
  if (nargs > 2 && !get_int64_arg(env, argv[2], "length", (op == OP_SCAN || op == OP_FADVISE) ? 0 : 1, &length)) return NULL;
  if (nargs > 3 && !get_int64_arg(env, argv[3], "arg", 0, &arg)) return NULL;
  if (offset + length > MAX_SAFE_INTEGER) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "offset + length out of range");
    return NULL;
  }
  if (op == OP_SCAN) {
    if (arg < 1) arg = 1;
    if (arg > MAX_SCAN_EXTENTS) arg = MAX_SCAN_EXTENTS;
  }

  Work *w = calloc(1, sizeof *w);
  if (!w) { napi_throw_error(env, "ENOMEM", "out of memory"); return NULL; }
  w->op = op;
  w->fd = (int)fd;
  w->offset = offset;
  w->length = length;
  w->arg = arg;

  napi_value promise, name;
  napi_create_promise(env, &w->deferred, &promise);
  napi_create_string_utf8(env, resource, NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, NULL, name, execute, complete, w, &w->work) != napi_ok ||
      napi_queue_async_work(env, w->work) != napi_ok) {
    napi_reject_deferred(env, w->deferred, make_errno_error(env, ENOMEM, "napi_queue_async_work"));
    free(w);
  }
  return promise;
}

#define DEFINE(fn, op, nargs)                                           \
  static napi_value fn(napi_env env, napi_callback_info info) {         \
    return start(env, info, op, nargs, "blockgate:" #fn);               \
  }

DEFINE(seekData, OP_SEEK_DATA, 2)
DEFINE(seekHole, OP_SEEK_HOLE, 2)
DEFINE(scanExtents, OP_SCAN, 4)
DEFINE(punchHole, OP_PUNCH, 3)
DEFINE(zeroRange, OP_ZERO_RANGE, 3)
DEFINE(allocate, OP_ALLOCATE, 3)
DEFINE(blkZeroOut, OP_BLK_ZEROOUT, 3)
DEFINE(blkDiscard, OP_BLK_DISCARD, 3)
DEFINE(blockDeviceSize, OP_BLK_SIZE, 1)
DEFINE(fadvise, OP_FADVISE, 4)


/* ---- synchronous RWF_NOWAIT I/O on the calling thread ---- */

static napi_value nowait_io(napi_env env, napi_callback_info info, int is_write) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 5) { napi_throw_type_error(env, "ERR_MISSING_ARGS", "missing arguments"); return NULL; }
  int64_t fd, boff, len, pos;
  if (!get_int64_arg(env, argv[0], "fd", 0, &fd)) return NULL;
  void *data = NULL;
  size_t blen = 0;
  if (!get_buffer_arg(env, argv[1], &data, &blen)) return NULL;
  if (!get_int64_arg(env, argv[2], "bufOff", 0, &boff)) return NULL;
  if (!get_int64_arg(env, argv[3], "length", 0, &len)) return NULL;
  if (!get_int64_arg(env, argv[4], "position", 0, &pos)) return NULL;
  if (fd > INT32_MAX || (uint64_t)boff + (uint64_t)len > blen) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "fd, bufOff or length out of range");
    return NULL;
  }
  struct iovec iov = {(char *)data + boff, (size_t)len};
  ssize_t n;
  do {
    n = is_write ? pwritev2((int)fd, &iov, 1, (off_t)pos, RWF_NOWAIT)
                 : preadv2((int)fd, &iov, 1, (off_t)pos, RWF_NOWAIT);
  } while (n < 0 && errno == EINTR);
  napi_value result;
  if (n < 0) {
    if (errno == EAGAIN) { napi_create_int32(env, -1, &result); return result; }
    napi_throw(env, make_errno_error(env, errno, is_write ? "pwritev2" : "preadv2"));
    return NULL;
  }
  napi_create_double(env, (double)n, &result);
  return result;
}

/* crc32c(buffer, initial = 0) -> number (synchronous) */
/* crc32cPath(): which CRC32C code this process uses ("avx512", "sse42" or "table"; tests assert the CPU's best one ran). */
static napi_value crc32cPath(napi_env env, napi_callback_info info) {
  (void)info;
  pthread_once(&crc_once, crc_setup);
  napi_value out;
  napi_create_string_utf8(env, crc_hw == 2 ? "avx512" : crc_hw == 1 ? "sse42" : "table", NAPI_AUTO_LENGTH, &out);
  return out;
}

static napi_value crc32cSync(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void *data = NULL;
  size_t blen = 0;
  if (!get_buffer_arg(env, argc >= 1 ? argv[0] : NULL, &data, &blen)) return NULL;
  uint32_t initial = 0;
  if (argc >= 2) {
    napi_valuetype t;
    napi_typeof(env, argv[1], &t);
    if (t != napi_undefined && (t != napi_number || napi_get_value_uint32(env, argv[1], &initial) != napi_ok)) {
      napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "initial must be a number (a CRC32C)");
      return NULL;
    }
  }
  napi_value result;
  napi_create_uint32(env, crc32c_from(initial, data, blen), &result);
  return result;
}

static napi_value preadNoWait(napi_env env, napi_callback_info info) { return nowait_io(env, info, 0); }
static napi_value pwriteNoWait(napi_env env, napi_callback_info info) { return nowait_io(env, info, 1); }

/*
 * Queues a pool job whose record `data` (malloc'ed) holds its deferred, work
 * and a reference to `keep` (the JS value whose memory the job reads or
 * writes, alive until `done` deletes the reference). Returns the promise; on
 * failure it is rejected and `data` freed.
 */
static napi_value queue_job(napi_env env, napi_value keep, const char *resource, napi_async_execute_callback exec,
                            napi_async_complete_callback done, void *data, napi_deferred *deferred, napi_async_work *work, napi_ref *ref) {
  napi_value promise, name;
  napi_create_promise(env, deferred, &promise);
  napi_create_string_utf8(env, resource, NAPI_AUTO_LENGTH, &name);
  if (napi_create_reference(env, keep, 1, ref) != napi_ok ||
      napi_create_async_work(env, NULL, name, exec, done, data, work) != napi_ok ||
      napi_queue_async_work(env, *work) != napi_ok) {
    napi_reject_deferred(env, *deferred, make_errno_error(env, ENOMEM, "napi_queue_async_work"));
    if (*work) napi_delete_async_work(env, *work);
    if (*ref) napi_delete_reference(env, *ref);
    free(data);
  }
  return promise;
}

/* ---- SHA-256 of a Buffer on the thread pool, in place ---- */

/* OpenSSL's one-shot SHA256 (SHA-NI/AVX2 where the CPU has them). Weak: when
 * the running Node does not export it the addon still loads, without sha256. */
extern unsigned char *SHA256(const unsigned char *d, size_t n, unsigned char *md) __attribute__((weak));

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref buffer_ref; /* keeps the input alive while a pool thread reads it */
  const unsigned char *data;
  size_t length;
  unsigned char digest[32];
} HashWork;

static void hash_execute(napi_env env, void *data) {
  HashWork *h = data;
  SHA256(h->data, h->length, h->digest);
}

static void hash_complete(napi_env env, napi_status status, void *data) {
  HashWork *h = data;
  napi_value result;
  void *out = NULL;
  if (status == napi_ok && napi_create_buffer_copy(env, sizeof h->digest, h->digest, &out, &result) == napi_ok) {
    napi_resolve_deferred(env, h->deferred, result);
  } else {
    napi_reject_deferred(env, h->deferred, make_errno_error(env, ECANCELED, "sha256"));
  }
  napi_delete_reference(env, h->buffer_ref);
  napi_delete_async_work(env, h->work);
  free(h);
}

static napi_value sha256(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void *data = NULL;
  size_t len = 0;
  if (!get_buffer_arg(env, argc >= 1 ? argv[0] : NULL, &data, &len)) return NULL;
  HashWork *h = calloc(1, sizeof *h);
  if (!h) { napi_throw_error(env, "ENOMEM", "out of memory"); return NULL; }
  h->data = data;
  h->length = len;
  return queue_job(env, argv[0], "blockgate:sha256", hash_execute, hash_complete, h, &h->deferred, &h->work, &h->buffer_ref);
}

/* ---- Slot reads checked on the thread pool, several per job ---- */

#define MAX_VERIFY_SEGMENTS 1024
#define VERIFY_FIELDS 5

typedef struct {
  uint8_t *buf;
  int64_t length, position;
  const uint32_t *crcs; /* from crcs[firstUnit] */
  double result;        /* -1 or the first bad unit */
  int err;
} Segment;

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref segments_ref; /* the caller's array: keeps every buffer and crcs array alive */
  int fd;
  int64_t unit_bytes;
  size_t count;
  Segment seg[];
} VerifyWork;

/* Reads all of one segment, then checks its units; fills result/err. (Checking
 * 64 KiB chunks as they arrive, while in the CPU cache, measured no faster.) */
static void verify_segment(int fd, int64_t unit_bytes, Segment *g) {
  int64_t done = 0;
  g->result = -1;
  while (done < g->length) {
    ssize_t n = pread(fd, g->buf + done, (size_t)(g->length - done), (off_t)(g->position + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      g->err = errno;
      return;
    }
    if (n == 0) { g->err = EIO; return; }
    done += n;
  }
  for (int64_t u = 0; u * unit_bytes < g->length; u++) {
    int64_t at = u * unit_bytes;
    int64_t len = g->length - at < unit_bytes ? g->length - at : unit_bytes;
    if (crc32c(g->buf + at, (size_t)len) != g->crcs[u]) { g->result = (double)u; return; }
  }
}

static void verify_execute(napi_env env, void *data) {
  VerifyWork *v = data;
  for (size_t i = 0; i < v->count; i++) verify_segment(v->fd, v->unit_bytes, &v->seg[i]);
}

static void verify_complete(napi_env env, napi_status status, void *data) {
  VerifyWork *v = data;
  napi_value ab, result;
  void *out = NULL;
  if (status == napi_ok && napi_create_arraybuffer(env, v->count * 2 * sizeof(double), &out, &ab) == napi_ok) {
    double *r = out;
    for (size_t i = 0; i < v->count; i++) { r[2 * i] = v->seg[i].result; r[2 * i + 1] = v->seg[i].err; }
    napi_create_typedarray(env, napi_float64_array, v->count * 2, ab, 0, &result);
    napi_resolve_deferred(env, v->deferred, result);
  } else {
    napi_reject_deferred(env, v->deferred, make_errno_error(env, ECANCELED, "preadVerify"));
  }
  napi_delete_reference(env, v->segments_ref);
  napi_delete_async_work(env, v->work);
  free(v);
}

/* Reads segment i's fields from the flat array; throws and returns 0 on bad input. */
static int get_segment(napi_env env, napi_value list, uint32_t i, int64_t unit, Segment *g) {
  napi_value f[VERIFY_FIELDS];
  for (uint32_t k = 0; k < VERIFY_FIELDS; k++) napi_get_element(env, list, i * VERIFY_FIELDS + k, &f[k]);
  void *data = NULL;
  size_t blen = 0;
  int64_t len, pos, first;
  if (!get_buffer_arg(env, f[0], &data, &blen)) return 0;
  if (!get_int64_arg(env, f[1], "length", 1, &len)) return 0;
  if (!get_int64_arg(env, f[2], "position", 0, &pos)) return 0;
  bool is_ta = false;
  napi_is_typedarray(env, f[3], &is_ta);
  napi_typedarray_type tat;
  size_t crc_count = 0;
  void *crc_data = NULL;
  if (!is_ta || napi_get_typedarray_info(env, f[3], &tat, &crc_count, &crc_data, NULL, NULL) != napi_ok || tat != napi_uint32_array) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "crcs must be a Uint32Array");
    return 0;
  }
  if (!get_int64_arg(env, f[4], "firstUnit", 0, &first)) return 0;
  int64_t units = (len + unit - 1) / unit;
  if ((uint64_t)len > blen || pos + len > MAX_SAFE_INTEGER || (uint64_t)first + (uint64_t)units > crc_count) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "length, position or firstUnit out of range");
    return 0;
  }
  g->buf = data;
  g->length = len;
  g->position = pos;
  g->crcs = (const uint32_t *)crc_data + first;
  return 1;
}

/* preadVerify(fd, segments, unitBytes) -> Promise<Float64Array> */
static napi_value preadVerify(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3) { napi_throw_type_error(env, "ERR_MISSING_ARGS", "missing arguments"); return NULL; }
  int64_t fd, unit;
  if (!get_int64_arg(env, argv[0], "fd", 0, &fd)) return NULL;
  if (!get_int64_arg(env, argv[2], "unitBytes", 1, &unit)) return NULL;
  bool is_array = false;
  uint32_t n = 0;
  napi_is_array(env, argv[1], &is_array);
  if (is_array) napi_get_array_length(env, argv[1], &n);
  if (!is_array || n == 0 || n % VERIFY_FIELDS != 0 || n / VERIFY_FIELDS > MAX_VERIFY_SEGMENTS) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "segments must be a non-empty array of [buffer, length, position, crcs, firstUnit]* (at most 1024)");
    return NULL;
  }
  if (fd > INT32_MAX) { napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "fd out of range"); return NULL; }
  size_t count = n / VERIFY_FIELDS;
  VerifyWork *v = calloc(1, sizeof *v + count * sizeof(Segment));
  if (!v) { napi_throw_error(env, "ENOMEM", "out of memory"); return NULL; }
  v->fd = (int)fd;
  v->unit_bytes = unit;
  v->count = count;
  for (uint32_t i = 0; i < count; i++) {
    if (!get_segment(env, argv[1], i, unit, &v->seg[i])) { free(v); return NULL; }
  }
  return queue_job(env, argv[1], "blockgate:preadVerify", verify_execute, verify_complete, v, &v->deferred, &v->work, &v->segments_ref);
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"seekData", NULL, seekData, NULL, NULL, NULL, napi_enumerable, NULL},
    {"seekHole", NULL, seekHole, NULL, NULL, NULL, napi_enumerable, NULL},
    {"scanExtents", NULL, scanExtents, NULL, NULL, NULL, napi_enumerable, NULL},
    {"punchHole", NULL, punchHole, NULL, NULL, NULL, napi_enumerable, NULL},
    {"zeroRange", NULL, zeroRange, NULL, NULL, NULL, napi_enumerable, NULL},
    {"allocate", NULL, allocate, NULL, NULL, NULL, napi_enumerable, NULL},
    {"blkZeroOut", NULL, blkZeroOut, NULL, NULL, NULL, napi_enumerable, NULL},
    {"blkDiscard", NULL, blkDiscard, NULL, NULL, NULL, napi_enumerable, NULL},
    {"blockDeviceSize", NULL, blockDeviceSize, NULL, NULL, NULL, napi_enumerable, NULL},
    {"fadvise", NULL, fadvise, NULL, NULL, NULL, napi_enumerable, NULL},
    {"preadNoWait", NULL, preadNoWait, NULL, NULL, NULL, napi_enumerable, NULL},
    {"pwriteNoWait", NULL, pwriteNoWait, NULL, NULL, NULL, napi_enumerable, NULL},
    {"preadVerify", NULL, preadVerify, NULL, NULL, NULL, napi_enumerable, NULL},
    {"crc32c", NULL, crc32cSync, NULL, NULL, NULL, napi_enumerable, NULL},
    {"crc32cPath", NULL, crc32cPath, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  if (SHA256 != NULL) {
    napi_property_descriptor hash = {"sha256", NULL, sha256, NULL, NULL, NULL, napi_enumerable, NULL};
    napi_define_properties(env, exports, 1, &hash);
  }
  return exports;
}

NAPI_MODULE_INIT() { return init(env, exports); }
