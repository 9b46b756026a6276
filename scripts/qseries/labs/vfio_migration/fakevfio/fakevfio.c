/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fakevfio: a user-space fake of the Linux VFIO uAPI, used with LD_PRELOAD
 *
 * It lets an unmodified QEMU realize "-device vfio-pci,sysfsdev=DIR" and
 * migrate it without VFIO hardware.  QEMU reads the group number from the
 * DIR/iommu_group symlink (a dangling link is enough) and then opens
 * /dev/vfio/vfio and /dev/vfio/N.  Those opens are answered here with
 * memfd descriptors owned by this library; ioctl, read, write, pread,
 * pwrite and close on them are emulated, everything else goes to libc.
 *
 * Every group N has one vfio-pci device: vendor 0x1af4, device 0x10f0,
 * class 0x088000, no capability list, INTx pin A, BAR0 = 4 KiB of 32-bit
 * memory reached through pread/pwrite (no mmap), config space 256 bytes.
 * The device implements migration v2: the kernel's FSM, including the
 * multi-arc steps of vfio_mig_get_next_state().  It has no device DMA
 * logging, so QEMU warns that the device has no dirty tracking and, with
 * enable-migration=on, migrates all of guest memory as dirty.
 *
 * This one file is the whole library.  It is a standalone shared object
 * loaded into an unmodified QEMU, so it includes no QEMU header (not even
 * qemu/osdep.h) and builds against the system's <linux/vfio.h>.
 *
 * Answered ioctls, by kind of descriptor (anything else gives ENOTTY):
 *
 *   fd kind    ioctl                               answer
 *   ---------  ----------------------------------  -------------------------
 *   container  VFIO_GET_API_VERSION                VFIO_API_VERSION
 *   container  VFIO_CHECK_EXTENSION                1 for TYPE1, TYPE1v2,
 *                                                  UNMAP_ALL (UPDATE_VADDR,
 *                                                  DMA_CC_IOMMU once set)
 *   container  VFIO_SET_IOMMU                      TYPE1/TYPE1v2, needs group
 *   container  VFIO_IOMMU_GET_INFO                 PGSIZES, caps IOVA_RANGE
 *                                                  and DMA_AVAIL
 *   container  VFIO_IOMMU_MAP_DMA                  checked, accepted
 *   container  VFIO_IOMMU_UNMAP_DMA                checked, accepted
 *   group      VFIO_GROUP_GET_STATUS               VIABLE [| CONTAINER_SET]
 *   group      VFIO_GROUP_SET_CONTAINER            fake container fds only
 *   group      VFIO_GROUP_UNSET_CONTAINER          EBUSY while device open
 *   group      VFIO_GROUP_GET_DEVICE_FD            any device name
 *   device     VFIO_DEVICE_GET_INFO                PCI | RESET, 9 regions,
 *                                                  5 irqs
 *   device     VFIO_DEVICE_GET_REGION_INFO         BAR0 4 KiB, config 256 B,
 *                                                  others size 0, VGA EINVAL
 *   device     VFIO_DEVICE_GET_IRQ_INFO            INTx 1, MSI 0, MSI-X 0,
 *                                                  ERR 1, REQ 1
 *   device     VFIO_DEVICE_SET_IRQS                validated, accepted
 *   device     VFIO_DEVICE_RESET                   back to RUNNING
 *   device     VFIO_DEVICE_GET_PCI_HOT_RESET_INFO  ENODEV
 *   device     VFIO_DEVICE_PCI_HOT_RESET           ENODEV
 *   device     VFIO_DEVICE_FEATURE                 MIGRATION (GET),
 *                                                  MIG_DEVICE_STATE (GET/SET),
 *                                                  MIG_DATA_SIZE (GET),
 *                                                  PROBE of each; others
 *                                                  ENOTTY
 *   data       VFIO_MIG_GET_PRECOPY_INFO           PRE_COPY states only
 *
 * Region offsets are index << 40 as in vfio-pci.  Saving data fds are read
 * (ENOMSG at the temporary end of pre-copy data, 0 at the end in STOP_COPY),
 * resuming data fds are written.
 *
 * Environment (all optional):
 *   FAKEVFIO_MIGRATION_FLAGS  comma list of stop_copy, p2p, pre_copy
 *                             (unset or empty: stop_copy,pre_copy;
 *                             stop_copy is always on)
 *   FAKEVFIO_DELAY            comma list of FROM>TO=MS: a SET whose
 *                             requested arc (current state > requested
 *                             state) matches sleeps MS inside the ioctl
 *   FAKEVFIO_FAIL             comma list of FROM>TO=ERRNO[:once]: a
 *                             matching SET fails with ERRNO (number or
 *                             name), state unchanged; after the delay if
 *                             one matches too; ":once" fails only the first
 *                             match
 *                             A DELAY or FAIL rule ending in @GROUP applies
 *                             to the device of IOMMU group GROUP only
 *   FAKEVFIO_RESET_FAIL       ERRNO: VFIO_DEVICE_RESET fails with ERRNO
 *                             while the device is not RUNNING (the reset
 *                             after a failed migration transition); the
 *                             reset of a running device still works
 *   FAKEVFIO_STATE_SIZE       bytes of state each device saves (the
 *                             payload: 65536 unless set, at most 1 GiB);
 *                             more than QEMU's 1 MiB data buffer gives
 *                             several buffers per device
 *   FAKEVFIO_LOG              log file (O_APPEND, one write per record,
 *                             fields split by one space, times in
 *                             CLOCK_REALTIME microseconds):
 *     init <pid> <flags>
 *     device <group> <name>
 *     begin <group> <from> <to> <time_us>
 *     transition <group> <from> <to> <begin_us> <end_us> <result>
 *     step <group> <from> <to>
 *     reset <group> <time_us>
 *     reset-failed <group> <time_us> <errno>
 *     release <group> <time_us>
 *     save <group> <bytes> <checksum>
 *     load <group> <bytes> <checksum> ok|bad
 *   State names are the kernel's (STOP, RUNNING, STOP_COPY, RESUMING,
 *   RUNNING_P2P, PRE_COPY, PRE_COPY_P2P), case-insensitive, '-' for '_'
 *   allowed, '*' for any.  A bad value prints "fakevfio: ..." on stderr and
 *   is ignored (a bad rule drops only that rule).
 *
 * "begin" is written when a MIG_DEVICE_STATE SET starts, before any delay,
 * and "transition" when it ends, with the same begin time; "step" is
 * written for every FSM arc actually taken.  "save" is written when the
 * last byte of a saving stream is read.  Each RESUMING session writes one
 * "load" record, at the first of: close of its fd, leaving RESUMING,
 * device reset or release.  Bytes and checksum are those of the payload;
 * the verdict is ok when the header matches what arrived.  As the kernel
 * requires, leaving RESUMING with a bad stream fails with EINVAL and puts
 * the device in ERROR.
 *
 * The saved stream is a 32 byte header (magic "FAKEVFIO", version, group,
 * payload length, FNV-1a 64 of the payload, little endian) and the payload,
 * FAKEVFIO_STATE_SIZE bytes generated from the group number only.  The
 * first half of the payload is pre-copy data when PRE_COPY is used.
 */

/*
 * The wrappers below define open/open64, pread/pread64 and the fortified
 * __*_chk entry points themselves, so the headers must not rename them
 * (as _FILE_OFFSET_BITS=64 would) nor wrap them (as _FORTIFY_SOURCE
 * would), whatever flags the build passes.
 */
#undef _FILE_OFFSET_BITS
#undef _FORTIFY_SOURCE
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include <linux/pci_regs.h>
#include <linux/vfio.h>

/* Parts of the uAPI that older system headers (e.g. Linux 6.1's) lack */
#ifndef VFIO_MIGRATION_PRE_COPY
#define VFIO_MIGRATION_PRE_COPY (1 << 2)
#endif

#ifndef VFIO_DEVICE_FEATURE_MIG_DATA_SIZE
#define VFIO_DEVICE_FEATURE_MIG_DATA_SIZE 9
struct vfio_device_feature_mig_data_size {
    __aligned_u64 stop_copy_length;
};
#endif

#ifndef VFIO_MIG_GET_PRECOPY_INFO
#define VFIO_MIG_GET_PRECOPY_INFO _IO(VFIO_TYPE, VFIO_BASE + 21)
struct vfio_precopy_info {
    __u32 argsz;
    __u32 flags;
    __aligned_u64 initial_bytes;
    __aligned_u64 dirty_bytes;
};
#endif

#define FV_EXPORT __attribute__((visibility("default")))

#define FV_MAX_FDS 65536
#define FV_REGION_SHIFT 40
#define FV_REGION_MASK ((1ULL << FV_REGION_SHIFT) - 1)
#define FV_BAR0_SIZE 4096
#define FV_CONFIG_SIZE 256
#define FV_NUM_REGIONS 9
#define FV_NUM_IRQS 5
#define FV_HDR_SIZE 32
#define FV_MAGIC "FAKEVFIO"
#define FV_STREAM_VERSION 1
#define FV_MAX_STATE (1ULL << 30)
#define FV_MAX_RULES 32
#define FV_MIN_PAGE 4096ULL
#define FV_STATE_SIZE 65536

#define FV_MIN(a, b) ((a) < (b) ? (a) : (b))

/*
 * Migration states, numbered as enum vfio_device_mig_state (the system
 * header may lack the PRE_COPY ones).
 */
enum {
    FV_ERROR = 0,
    FV_STOP = 1,
    FV_RUNNING = 2,
    FV_STOP_COPY = 3,
    FV_RESUMING = 4,
    FV_RUNNING_P2P = 5,
    FV_PRE_COPY = 6,
    FV_PRE_COPY_P2P = 7,
    FV_NSTATES = 8,
};

_Static_assert((int)FV_STOP == (int)VFIO_DEVICE_STATE_STOP,
               "state numbering");
_Static_assert((int)FV_RUNNING_P2P == (int)VFIO_DEVICE_STATE_RUNNING_P2P,
               "state numbering");

#define FV_ANY_STATE 0xffffffffu

typedef enum FakeKind {
    FV_KIND_CONTAINER = 1,
    FV_KIND_GROUP,
    FV_KIND_DEVICE,
    FV_KIND_DATA,
} FakeKind;

typedef struct FakeContainer {
    unsigned refs;          /* open fd plus attached groups */
    unsigned ngroups;
    uint32_t iommu_type;    /* 0 until VFIO_SET_IOMMU */
} FakeContainer;

typedef struct FakeDevice FakeDevice;

typedef struct FakeGroup {
    struct FakeGroup *next;
    unsigned number;
    bool open;
    unsigned device_fds;
    FakeContainer *container;
    FakeDevice *dev;
} FakeGroup;

typedef struct FakeSession {
    FakeDevice *dev;
    bool resuming;
    bool attached;          /* still the device's current session */
    bool precopy;           /* saving: reads stop at precopy_end */
    bool logged;            /* save or load record written */
    bool verdict_ok;        /* resuming: stream checked good */
    bool fd_open;
    uint8_t *buf;
    size_t len;             /* saving: stream size; resuming: bytes written */
    size_t cap;
    size_t pos;             /* saving: read position */
    size_t precopy_end;
} FakeSession;

struct FakeDevice {
    FakeGroup *group;
    char name[64];
    uint32_t state;
    bool busy;              /* a delayed SET is sleeping */
    FakeSession *sess;
    uint8_t config[FV_CONFIG_SIZE];
    uint8_t bar0[FV_BAR0_SIZE];
};

typedef struct FakeFile {
    FakeKind kind;
    int fd;
    uint64_t pos;           /* device: file position for read/write */
    FakeContainer *container;
    FakeGroup *group;
    FakeDevice *dev;
    FakeSession *sess;
} FakeFile;

typedef struct FvRule {
    uint32_t from;
    uint32_t to;
    unsigned value;         /* milliseconds or errno */
    unsigned group;         /* only this IOMMU group's device; 0: any */
    bool once;
    bool spent;
} FvRule;

typedef struct FvConfig {
    bool loaded;
    uint64_t mig_flags;
    int log_fd;
    unsigned ndelays;
    unsigned nfails;
    unsigned reset_errno;   /* FAKEVFIO_RESET_FAIL, 0 if unset */
    uint64_t state_size;    /* FAKEVFIO_STATE_SIZE: payload bytes */
    FvRule delays[FV_MAX_RULES];
    FvRule fails[FV_MAX_RULES];
} FvConfig;

/* ---------------------------------------------------------------------- */
/* libc entry points */

typedef int OpenFn(const char *, int, ...);
typedef int OpenatFn(int, const char *, int, ...);
typedef int Open2Fn(const char *, int);
typedef int Openat2Fn(int, const char *, int);
typedef int IoctlFn(int, unsigned long, ...);
typedef ssize_t ReadFn(int, void *, size_t);
typedef ssize_t ReadChkFn(int, void *, size_t, size_t);
typedef ssize_t WriteFn(int, const void *, size_t);
typedef ssize_t PreadFn(int, void *, size_t, off_t);
typedef ssize_t Pread64Fn(int, void *, size_t, off64_t);
typedef ssize_t PreadChkFn(int, void *, size_t, off_t, size_t);
typedef ssize_t Pread64ChkFn(int, void *, size_t, off64_t, size_t);
typedef ssize_t PwriteFn(int, const void *, size_t, off_t);
typedef ssize_t Pwrite64Fn(int, const void *, size_t, off64_t);
typedef int CloseFn(int);

/*
 * Interposed too, but declared by no header unless _FORTIFY_SOURCE is on:
 * these declarations give their definitions a prototype.
 */
Open2Fn __open_2, __open64_2;
Openat2Fn __openat_2, __openat64_2;
ReadChkFn __read_chk;
PreadChkFn __pread_chk;
Pread64ChkFn __pread64_chk;

enum {
    R_OPEN,
    R_OPEN64,
    R_OPENAT,
    R_OPENAT64,
    R_OPEN_2,
    R_OPEN64_2,
    R_OPENAT_2,
    R_OPENAT64_2,
    R_IOCTL,
    R_READ,
    R_READ_CHK,
    R_WRITE,
    R_PREAD,
    R_PREAD64,
    R_PREAD_CHK,
    R_PREAD64_CHK,
    R_PWRITE,
    R_PWRITE64,
    R_CLOSE,
    R_COUNT,
};

static const char *const fv_real_names[R_COUNT] = {
    [R_OPEN] = "open",
    [R_OPEN64] = "open64",
    [R_OPENAT] = "openat",
    [R_OPENAT64] = "openat64",
    [R_OPEN_2] = "__open_2",
    [R_OPEN64_2] = "__open64_2",
    [R_OPENAT_2] = "__openat_2",
    [R_OPENAT64_2] = "__openat64_2",
    [R_IOCTL] = "ioctl",
    [R_READ] = "read",
    [R_READ_CHK] = "__read_chk",
    [R_WRITE] = "write",
    [R_PREAD] = "pread",
    [R_PREAD64] = "pread64",
    [R_PREAD_CHK] = "__pread_chk",
    [R_PREAD64_CHK] = "__pread64_chk",
    [R_PWRITE] = "pwrite",
    [R_PWRITE64] = "pwrite64",
    [R_CLOSE] = "close",
};

static void *fv_real_syms[R_COUNT];

static void *fv_real(int idx)
{
    void *sym = __atomic_load_n(&fv_real_syms[idx], __ATOMIC_ACQUIRE);

    if (!sym) {
        sym = dlsym(RTLD_NEXT, fv_real_names[idx]);
        if (!sym) {
            static const char msg[] = "fakevfio: missing libc symbol\n";
            WriteFn *wr = dlsym(RTLD_NEXT, "write");

            if (wr) {
                wr(2, msg, sizeof(msg) - 1);
            }
            abort();
        }
        __atomic_store_n(&fv_real_syms[idx], sym, __ATOMIC_RELEASE);
    }
    return sym;
}

/* ---------------------------------------------------------------------- */
/* global state, all under fv_mutex */

static pthread_mutex_t fv_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t fv_cond = PTHREAD_COND_INITIALIZER;
static FakeFile *fv_files[FV_MAX_FDS];
static FakeGroup *fv_groups;
static FvConfig fv_cfg = { .log_fd = -1 };

static inline FakeFile *fv_file_at(int fd)
{
    if (fd < 0 || fd >= FV_MAX_FDS) {
        return NULL;
    }
    return __atomic_load_n(&fv_files[fd], __ATOMIC_ACQUIRE);
}

static inline bool fv_is_fake(int fd)
{
    return fv_file_at(fd) != NULL;
}

/*
 * Look up a fake fd with fv_mutex held, waiting while its device is in the
 * middle of a delayed state change (as the kernel's state mutex would).
 */
static FakeFile *fv_lookup(int fd)
{
    for (;;) {
        FakeFile *f = fv_file_at(fd);

        if (!f || !f->dev || !f->dev->busy) {
            return f;
        }
        pthread_cond_wait(&fv_cond, &fv_mutex);
    }
}

/* ---------------------------------------------------------------------- */
/* helpers */

static int64_t fv_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void fv_sleep_ms(unsigned ms)
{
    struct timespec ts = {
        .tv_sec = ms / 1000,
        .tv_nsec = (long)(ms % 1000) * 1000000,
    };

    while (nanosleep(&ts, &ts) && errno == EINTR) {
        continue;
    }
}

static const char *const fv_state_names[FV_NSTATES] = {
    [FV_ERROR] = "ERROR",
    [FV_STOP] = "STOP",
    [FV_RUNNING] = "RUNNING",
    [FV_STOP_COPY] = "STOP_COPY",
    [FV_RESUMING] = "RESUMING",
    [FV_RUNNING_P2P] = "RUNNING_P2P",
    [FV_PRE_COPY] = "PRE_COPY",
    [FV_PRE_COPY_P2P] = "PRE_COPY_P2P",
};

static const char *fv_state_name(uint32_t state, char *buf, size_t len)
{
    if (state < FV_NSTATES) {
        return fv_state_names[state];
    }
    snprintf(buf, len, "STATE_%" PRIu32, state);
    return buf;
}

#define FV_ERRNO(e) { e, #e }

static const struct {
    int value;
    const char *name;
} fv_errnos[] = {
    FV_ERRNO(EPERM), FV_ERRNO(ENOENT), FV_ERRNO(ESRCH), FV_ERRNO(EINTR),
    FV_ERRNO(EIO), FV_ERRNO(ENXIO), FV_ERRNO(E2BIG), FV_ERRNO(ENOEXEC),
    FV_ERRNO(EBADF), FV_ERRNO(ECHILD), FV_ERRNO(EAGAIN), FV_ERRNO(ENOMEM),
    FV_ERRNO(EACCES), FV_ERRNO(EFAULT), FV_ERRNO(EBUSY), FV_ERRNO(EEXIST),
    FV_ERRNO(EXDEV), FV_ERRNO(ENODEV), FV_ERRNO(ENOTDIR), FV_ERRNO(EISDIR),
    FV_ERRNO(EINVAL), FV_ERRNO(ENFILE), FV_ERRNO(EMFILE), FV_ERRNO(ENOTTY),
    FV_ERRNO(EFBIG), FV_ERRNO(ENOSPC), FV_ERRNO(ESPIPE), FV_ERRNO(EROFS),
    FV_ERRNO(EPIPE), FV_ERRNO(EDOM), FV_ERRNO(ERANGE), FV_ERRNO(EDEADLK),
    FV_ERRNO(ENOSYS), FV_ERRNO(ENOMSG), FV_ERRNO(EPROTO),
    FV_ERRNO(EOVERFLOW), FV_ERRNO(EBADMSG), FV_ERRNO(EILSEQ),
    FV_ERRNO(EOPNOTSUPP), FV_ERRNO(ENOTSUP), FV_ERRNO(EWOULDBLOCK),
    FV_ERRNO(EDEADLOCK), FV_ERRNO(ENOBUFS), FV_ERRNO(ETIMEDOUT),
    FV_ERRNO(ECANCELED), FV_ERRNO(EHWPOISON), FV_ERRNO(ENOLINK),
    FV_ERRNO(ECOMM), FV_ERRNO(EREMOTEIO), FV_ERRNO(EMSGSIZE),
    FV_ERRNO(ENODATA), FV_ERRNO(ETIME), FV_ERRNO(ESHUTDOWN),
    FV_ERRNO(ECONNRESET), FV_ERRNO(EINPROGRESS), FV_ERRNO(EALREADY),
};

/* Name of an errno value; aliases (ENOTSUP...) come after their twins */
static const char *fv_errno_name(int err, char *buf, size_t len)
{
    size_t i;

    for (i = 0; i < sizeof(fv_errnos) / sizeof(fv_errnos[0]); i++) {
        if (fv_errnos[i].value == err) {
            return fv_errnos[i].name;
        }
    }
    snprintf(buf, len, "%d", err);
    return buf;
}

static void fv_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void fv_log(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    int n;

    if (fv_cfg.log_fd < 0) {
        return;
    }
    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    if ((size_t)n > sizeof(line) - 2) {
        n = sizeof(line) - 2;
    }
    line[n++] = '\n';
    /* One write per record: O_APPEND keeps records whole */
    ((WriteFn *)fv_real(R_WRITE))(fv_cfg.log_fd, line, n);
}

static uint64_t fv_fnv1a(const uint8_t *p, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    size_t i;

    for (i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static uint64_t fv_mix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void fv_put_le(uint8_t *p, uint64_t v, unsigned bytes)
{
    unsigned i;

    for (i = 0; i < bytes; i++) {
        p[i] = v >> (8 * i);
    }
}

static uint64_t fv_get_le(const uint8_t *p, unsigned bytes)
{
    uint64_t v = 0;
    unsigned i;

    for (i = 0; i < bytes; i++) {
        v |= (uint64_t)p[i] << (8 * i);
    }
    return v;
}

/* ---------------------------------------------------------------------- */
/* configuration from the environment */

static void fv_bad_env(const char *var, const char *what, const char *val)
{
    fprintf(stderr, "fakevfio: %s: %s '%s' ignored\n", var, what, val);
}

static char *fv_trim(char *s)
{
    char *end;

    while (isspace((unsigned char)*s)) {
        s++;
    }
    end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1])) {
        *--end = '\0';
    }
    return s;
}

/* Decimal or 0x hexadecimal, nothing else; false if invalid or > max */
static bool fv_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    unsigned base = 10;
    uint64_t v = 0;

    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    }
    if (!*s) {
        return false;
    }
    for (; *s; s++) {
        unsigned digit;

        if (isdigit((unsigned char)*s)) {
            digit = *s - '0';
        } else if (base == 16 && isxdigit((unsigned char)*s)) {
            digit = tolower((unsigned char)*s) - 'a' + 10;
        } else {
            return false;
        }
        if (v > (UINT64_MAX - digit) / base) {
            return false;
        }
        v = v * base + digit;
    }
    if (v > max) {
        return false;
    }
    *out = v;
    return true;
}

static bool fv_parse_state(const char *s, uint32_t *out)
{
    char norm[32];
    size_t i;

    if (!strcmp(s, "*")) {
        *out = FV_ANY_STATE;
        return true;
    }
    if (strlen(s) >= sizeof(norm)) {
        return false;
    }
    for (i = 0; s[i]; i++) {
        norm[i] = s[i] == '-' ? '_' : toupper((unsigned char)s[i]);
    }
    norm[i] = '\0';
    for (i = 0; i < FV_NSTATES; i++) {
        if (!strcmp(norm, fv_state_names[i])) {
            *out = i;
            return true;
        }
    }
    return false;
}

static bool fv_parse_errno(const char *s, unsigned *out)
{
    uint64_t v;
    size_t i;

    if (fv_parse_u64(s, 4095, &v)) {
        if (!v) {
            return false;
        }
        *out = v;
        return true;
    }
    for (i = 0; i < sizeof(fv_errnos) / sizeof(fv_errnos[0]); i++) {
        if (!strcasecmp(s, fv_errnos[i].name)) {
            *out = fv_errnos[i].value;
            return true;
        }
    }
    return false;
}

/*
 * Parse "FROM>TO=VALUE[:once][@GROUP]"; VALUE is milliseconds or an errno,
 * GROUP limits the rule to the device of that IOMMU group
 */
static bool fv_parse_rule(char *item, bool is_fail, FvRule *rule)
{
    char *gt = strchr(item, '>');
    char *eq = strchr(item, '=');
    char *at = strrchr(item, '@');
    char *value, *colon;
    uint64_t ms, group = 0;

    if (!gt || !eq || eq < gt || (at && at < eq)) {
        return false;
    }
    if (at) {
        *at = '\0';
        if (!fv_parse_u64(fv_trim(at + 1), UINT32_MAX, &group) || !group) {
            return false;
        }
    }
    *gt = '\0';
    *eq = '\0';
    value = fv_trim(eq + 1);
    memset(rule, 0, sizeof(*rule));
    rule->group = group;
    if (!fv_parse_state(fv_trim(item), &rule->from) ||
        !fv_parse_state(fv_trim(gt + 1), &rule->to)) {
        return false;
    }
    if (!is_fail) {
        if (!fv_parse_u64(value, 3600000, &ms)) {
            return false;
        }
        rule->value = ms;
        return true;
    }
    colon = strchr(value, ':');
    if (colon) {
        *colon = '\0';
        if (strcasecmp(fv_trim(colon + 1), "once")) {
            return false;
        }
        rule->once = true;
    }
    return fv_parse_errno(fv_trim(value), &rule->value);
}

static void fv_parse_rules(const char *var, bool is_fail, FvRule *rules,
                           unsigned *count)
{
    const char *env = getenv(var);
    char *copy, *save = NULL, *item;

    *count = 0;
    if (!env) {
        return;
    }
    copy = strdup(env);
    if (!copy) {
        return;
    }
    for (item = strtok_r(copy, ",", &save); item;
         item = strtok_r(NULL, ",", &save)) {
        char *orig = strdup(item);
        char *t = fv_trim(item);

        if (!*t) {
            free(orig);
            continue;
        }
        if (*count >= FV_MAX_RULES) {
            fv_bad_env(var, "too many rules, rule", orig ? orig : t);
        } else if (fv_parse_rule(t, is_fail, &rules[*count])) {
            (*count)++;
        } else {
            fv_bad_env(var, "bad rule", orig ? fv_trim(orig) : "?");
        }
        free(orig);
    }
    free(copy);
}

static void fv_parse_flags(void)
{
    const char *env = getenv("FAKEVFIO_MIGRATION_FLAGS");
    char *copy, *save = NULL, *item;

    fv_cfg.mig_flags = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_PRE_COPY;
    if (!env || !*env) {
        return;
    }
    fv_cfg.mig_flags = VFIO_MIGRATION_STOP_COPY;
    copy = strdup(env);
    if (!copy) {
        return;
    }
    for (item = strtok_r(copy, ",", &save); item;
         item = strtok_r(NULL, ",", &save)) {
        char *t = fv_trim(item);

        if (!*t) {
            continue;
        }
        if (!strcasecmp(t, "stop_copy") || !strcasecmp(t, "stop-copy")) {
            fv_cfg.mig_flags |= VFIO_MIGRATION_STOP_COPY;
        } else if (!strcasecmp(t, "p2p")) {
            fv_cfg.mig_flags |= VFIO_MIGRATION_P2P;
        } else if (!strcasecmp(t, "pre_copy") ||
                   !strcasecmp(t, "pre-copy")) {
            fv_cfg.mig_flags |= VFIO_MIGRATION_PRE_COPY;
        } else {
            fv_bad_env("FAKEVFIO_MIGRATION_FLAGS", "unknown flag", t);
        }
    }
    free(copy);
}

/* FAKEVFIO_STATE_SIZE: the payload of every saved stream */
static void fv_parse_state_size(void)
{
    const char *env = getenv("FAKEVFIO_STATE_SIZE");
    uint64_t size;

    fv_cfg.state_size = FV_STATE_SIZE;
    if (!env || !*env) {
        return;
    }
    if (!fv_parse_u64(env, FV_MAX_STATE, &size) || !size) {
        fv_bad_env("FAKEVFIO_STATE_SIZE", "not a size in bytes", env);
        return;
    }
    fv_cfg.state_size = size;
}

static void fv_load_config(void)
{
    const char *log, *reset;
    char flags[64];

    if (fv_cfg.loaded) {
        return;
    }
    fv_cfg.loaded = true;
    fv_parse_flags();
    fv_parse_rules("FAKEVFIO_DELAY", false, fv_cfg.delays, &fv_cfg.ndelays);
    fv_parse_rules("FAKEVFIO_FAIL", true, fv_cfg.fails, &fv_cfg.nfails);
    reset = getenv("FAKEVFIO_RESET_FAIL");
    if (reset && *reset && !fv_parse_errno(reset, &fv_cfg.reset_errno)) {
        fv_bad_env("FAKEVFIO_RESET_FAIL", "not an errno", reset);
    }
    fv_parse_state_size();

    log = getenv("FAKEVFIO_LOG");
    if (log && *log) {
        fv_cfg.log_fd = ((OpenFn *)fv_real(R_OPEN))(
            log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fv_cfg.log_fd < 0) {
            fprintf(stderr, "fakevfio: FAKEVFIO_LOG: cannot open '%s': %s\n",
                    log, strerror(errno));
        }
    }

    snprintf(flags, sizeof(flags), "stop_copy%s%s",
             fv_cfg.mig_flags & VFIO_MIGRATION_P2P ? ",p2p" : "",
             fv_cfg.mig_flags & VFIO_MIGRATION_PRE_COPY ? ",pre_copy" : "");
    fv_log("init %d %s", (int)getpid(), flags);
}

static bool fv_rule_matches(const FvRule *r, const FakeDevice *d,
                            uint32_t from, uint32_t to)
{
    return (r->from == FV_ANY_STATE || r->from == from) &&
           (r->to == FV_ANY_STATE || r->to == to) &&
           (!r->group || r->group == d->group->number);
}

/* ---------------------------------------------------------------------- */
/* fd table */

static int fv_new_fd(const char *name, bool cloexec)
{
    int fd = memfd_create(name, cloexec ? MFD_CLOEXEC : 0);

    if (fd < 0) {
        return -errno;
    }
    if (fd >= FV_MAX_FDS) {
        ((CloseFn *)fv_real(R_CLOSE))(fd);
        return -EMFILE;
    }
    return fd;
}

/* Create a fake fd of the given kind; returns the fd or -errno */
static int fv_add_file(FakeKind kind, const char *name, bool cloexec,
                       FakeFile **out)
{
    FakeFile *f = calloc(1, sizeof(*f));
    int fd;

    if (!f) {
        return -ENOMEM;
    }
    fd = fv_new_fd(name, cloexec);
    if (fd < 0) {
        free(f);
        return fd;
    }
    f->kind = kind;
    f->fd = fd;
    *out = f;
    __atomic_store_n(&fv_files[fd], f, __ATOMIC_RELEASE);
    return fd;
}

/* ---------------------------------------------------------------------- */
/* device model */

static void fv_config_defaults(uint8_t *c)
{
    memset(c, 0, FV_CONFIG_SIZE);
    fv_put_le(c + PCI_VENDOR_ID, 0x1af4, 2);
    fv_put_le(c + PCI_DEVICE_ID, 0x10f0, 2);
    c[PCI_REVISION_ID] = 0x01;
    c[PCI_CLASS_PROG] = 0x00;
    fv_put_le(c + PCI_CLASS_DEVICE, 0x0880, 2);
    c[PCI_HEADER_TYPE] = PCI_HEADER_TYPE_NORMAL;
    fv_put_le(c + PCI_BASE_ADDRESS_0, PCI_BASE_ADDRESS_SPACE_MEMORY |
              PCI_BASE_ADDRESS_MEM_TYPE_32, 4);
    fv_put_le(c + PCI_SUBSYSTEM_VENDOR_ID, 0x1af4, 2);
    fv_put_le(c + PCI_SUBSYSTEM_ID, 0x1100, 2);
    c[PCI_INTERRUPT_PIN] = 1;
}

/* Writable bits of config space; everything else is read-only */
static uint8_t fv_config_wmask(unsigned off)
{
    static const uint32_t bar0_mask = ~(uint32_t)(FV_BAR0_SIZE - 1);
    uint16_t cmd = PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER |
                   PCI_COMMAND_PARITY | PCI_COMMAND_SERR |
                   PCI_COMMAND_INTX_DISABLE;

    switch (off) {
    case PCI_COMMAND:
    case PCI_COMMAND + 1:
        return cmd >> (8 * (off - PCI_COMMAND));
    case PCI_CACHE_LINE_SIZE:
    case PCI_LATENCY_TIMER:
    case PCI_INTERRUPT_LINE:
        return 0xff;
    case PCI_BASE_ADDRESS_0:
    case PCI_BASE_ADDRESS_0 + 1:
    case PCI_BASE_ADDRESS_0 + 2:
    case PCI_BASE_ADDRESS_0 + 3:
        return bar0_mask >> (8 * (off - PCI_BASE_ADDRESS_0));
    default:
        return 0;
    }
}

static FakeGroup *fv_group_get(unsigned number)
{
    FakeGroup *g;

    for (g = fv_groups; g; g = g->next) {
        if (g->number == number) {
            return g;
        }
    }
    g = calloc(1, sizeof(*g));
    if (!g) {
        return NULL;
    }
    g->dev = calloc(1, sizeof(*g->dev));
    if (!g->dev) {
        free(g);
        return NULL;
    }
    g->number = number;
    g->dev->group = g;
    g->dev->state = FV_RUNNING;
    fv_config_defaults(g->dev->config);
    g->next = fv_groups;
    fv_groups = g;
    return g;
}

static void fv_session_free(FakeSession *s)
{
    free(s->buf);
    free(s);
}

/* Check a resumed stream and write its load record, once */
static void fv_resume_finish(FakeSession *s)
{
    uint64_t payload, sum;
    bool ok;

    if (s->logged) {
        return;
    }
    payload = s->len > FV_HDR_SIZE ? s->len - FV_HDR_SIZE : 0;
    sum = fv_fnv1a(s->buf + FV_HDR_SIZE, payload);
    ok = s->len >= FV_HDR_SIZE &&
         !memcmp(s->buf, FV_MAGIC, 8) &&
         fv_get_le(s->buf + 8, 4) == FV_STREAM_VERSION &&
         fv_get_le(s->buf + 16, 8) == payload &&
         fv_get_le(s->buf + 24, 8) == sum;
    s->verdict_ok = ok;
    s->logged = true;
    fv_log("load %u %" PRIu64 " %016" PRIx64 " %s", s->dev->group->number,
           payload, sum, ok ? "ok" : "bad");
}

/* End the device's current data transfer session */
static void fv_session_detach(FakeDevice *d)
{
    FakeSession *s = d->sess;

    if (!s) {
        return;
    }
    if (s->resuming) {
        fv_resume_finish(s);
    }
    s->attached = false;
    d->sess = NULL;
    if (!s->fd_open) {
        fv_session_free(s);
    }
}

/* Start a data transfer session; returns the new data fd or -errno */
static int fv_session_start(FakeDevice *d, bool resuming, bool precopy)
{
    FakeSession *s = calloc(1, sizeof(*s));
    FakeFile *f;
    char name[48];
    int fd;

    if (!s) {
        return -ENOMEM;
    }
    s->dev = d;
    s->resuming = resuming;
    s->precopy = precopy;
    if (!resuming) {
        uint64_t size = fv_cfg.state_size;
        uint64_t x = ((uint64_t)d->group->number << 32) ^
                     0x46414b4556464931ULL;
        uint8_t *p;
        size_t i;

        s->len = FV_HDR_SIZE + size;
        s->buf = malloc(s->len);
        if (!s->buf) {
            free(s);
            return -ENOMEM;
        }
        p = s->buf + FV_HDR_SIZE;
        for (i = 0; i + 8 <= size; i += 8) {
            fv_put_le(p + i, fv_mix64(&x), 8);
        }
        if (i < size) {
            fv_put_le(p + i, fv_mix64(&x), size - i);
        }
        memcpy(s->buf, FV_MAGIC, 8);
        fv_put_le(s->buf + 8, FV_STREAM_VERSION, 4);
        fv_put_le(s->buf + 12, d->group->number, 4);
        fv_put_le(s->buf + 16, size, 8);
        fv_put_le(s->buf + 24, fv_fnv1a(p, size), 8);
        s->precopy_end = FV_HDR_SIZE + size / 2;
    }
    snprintf(name, sizeof(name), "fakevfio-%s-%u",
             resuming ? "resume" : "save", d->group->number);
    fd = fv_add_file(FV_KIND_DATA, name, true, &f);
    if (fd < 0) {
        fv_session_free(s);
        return fd;
    }
    f->dev = d;
    f->sess = s;
    s->fd_open = true;
    s->attached = true;
    d->sess = s;
    return fd;
}

/* Back to the power-on state: RUNNING, no sessions, default config */
static void fv_device_hw_reset(FakeDevice *d)
{
    fv_session_detach(d);
    d->state = FV_RUNNING;
    fv_config_defaults(d->config);
    memset(d->bar0, 0, sizeof(d->bar0));
}

static bool fv_state_supported(uint32_t state)
{
    static const uint64_t needs[FV_NSTATES] = {
        [FV_ERROR] = ~0ULL,
        [FV_STOP] = VFIO_MIGRATION_STOP_COPY,
        [FV_RUNNING] = VFIO_MIGRATION_STOP_COPY,
        [FV_STOP_COPY] = VFIO_MIGRATION_STOP_COPY,
        [FV_RESUMING] = VFIO_MIGRATION_STOP_COPY,
        [FV_RUNNING_P2P] = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P,
        [FV_PRE_COPY] = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_PRE_COPY,
        [FV_PRE_COPY_P2P] = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P |
                            VFIO_MIGRATION_PRE_COPY,
    };

    return state < FV_NSTATES &&
           (needs[state] & fv_cfg.mig_flags) == needs[state];
}

/*
 * Next state on the way from cur to target: the kernel's
 * vfio_mig_get_next_state() table (shortest path, saving states never
 * interior), then skipping states the device does not support.
 */
static uint32_t fv_next_state(uint32_t cur, uint32_t target)
{
    enum {
        E = FV_ERROR, S = FV_STOP, R = FV_RUNNING, SC = FV_STOP_COPY,
        RS = FV_RESUMING, RP = FV_RUNNING_P2P, PC = FV_PRE_COPY,
        PP = FV_PRE_COPY_P2P,
    };
    /* [cur][target], targets in order E S R SC RS RP PC PP */
    static const uint8_t table[FV_NSTATES][FV_NSTATES] = {
        [FV_ERROR] =        { E, E,  E,  E,  E,  E,  E,  E },
        [FV_STOP] =         { E, S,  RP, SC, RS, RP, RP, RP },
        [FV_RUNNING] =      { E, RP, R,  RP, RP, RP, PC, RP },
        [FV_STOP_COPY] =    { E, S,  S,  SC, S,  S,  E,  E },
        [FV_RESUMING] =     { E, S,  S,  S,  RS, S,  S,  S },
        [FV_RUNNING_P2P] =  { E, S,  R,  S,  S,  RP, R,  PP },
        [FV_PRE_COPY] =     { E, R,  R,  PP, R,  R,  PC, PP },
        [FV_PRE_COPY_P2P] = { E, RP, RP, SC, RP, RP, PC, PP },
    };
    uint32_t next = table[cur][target];

    while (next != FV_ERROR && !fv_state_supported(next)) {
        next = table[next][target];
    }
    return next;
}

/* Perform one FSM arc; returns 0, or -errno with the state unchanged */
static int fv_arc(FakeDevice *d, uint32_t cur, uint32_t next, int *data_fd)
{
    FakeSession *s = d->sess;
    int fd;

    if ((cur == FV_STOP && next == FV_STOP_COPY) ||
        (cur == FV_RUNNING && next == FV_PRE_COPY) ||
        (cur == FV_RUNNING_P2P && next == FV_PRE_COPY_P2P)) {
        fv_session_detach(d);
        fd = fv_session_start(d, false, next != FV_STOP_COPY);
        if (fd < 0) {
            return fd;
        }
        *data_fd = fd;
    } else if (cur == FV_STOP && next == FV_RESUMING) {
        fv_session_detach(d);
        fd = fv_session_start(d, true, false);
        if (fd < 0) {
            return fd;
        }
        *data_fd = fd;
    } else if (cur == FV_RESUMING) {
        bool ok = s && s->resuming;

        if (ok) {
            fv_resume_finish(s);
            ok = s->verdict_ok;
        }
        fv_session_detach(d);
        if (!ok) {
            /* incomplete or inconsistent state: the arc fails */
            d->state = FV_ERROR;
            return -EINVAL;
        }
    } else if ((cur == FV_PRE_COPY || cur == FV_PRE_COPY_P2P) &&
               next == FV_STOP_COPY) {
        /* same stream, now without the pre-copy limit */
        if (s) {
            s->precopy = false;
        }
    } else if ((cur == FV_STOP_COPY && next == FV_STOP) ||
               (cur == FV_PRE_COPY && next == FV_RUNNING) ||
               (cur == FV_PRE_COPY_P2P && next == FV_RUNNING_P2P)) {
        fv_session_detach(d);
    }
    return 0;
}

static int fv_fsm_set(FakeDevice *d, uint32_t target, int *data_fd)
{
    if (!fv_state_supported(d->state) || !fv_state_supported(target)) {
        return -EINVAL;
    }
    while (d->state != target) {
        uint32_t cur = d->state;
        uint32_t next = fv_next_state(cur, target);
        int ret;

        if (next == FV_ERROR) {
            return -EINVAL;
        }
        ret = fv_arc(d, cur, next, data_fd);
        if (ret) {
            return ret;
        }
        d->state = next;
        fv_log("step %u %s %s", d->group->number, fv_state_names[cur],
               fv_state_names[next]);
    }
    return 0;
}

/* VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE with SET; called with fv_mutex */
static int fv_mig_set_state(FakeDevice *d,
                            struct vfio_device_feature_mig_state *mig)
{
    uint32_t from = d->state, to = mig->device_state;
    char b1[24], b2[24], b3[24];
    int64_t begin = fv_now_us(), end;
    int data_fd = -1;
    int ret = 0;
    unsigned i;

    fv_log("begin %u %s %s %" PRId64, d->group->number,
           fv_state_name(from, b1, sizeof(b1)),
           fv_state_name(to, b2, sizeof(b2)), begin);
    for (i = 0; i < fv_cfg.ndelays; i++) {
        if (fv_rule_matches(&fv_cfg.delays[i], d, from, to)) {
            d->busy = true;
            pthread_mutex_unlock(&fv_mutex);
            fv_sleep_ms(fv_cfg.delays[i].value);
            pthread_mutex_lock(&fv_mutex);
            d->busy = false;
            pthread_cond_broadcast(&fv_cond);
            break;
        }
    }
    for (i = 0; i < fv_cfg.nfails; i++) {
        FvRule *r = &fv_cfg.fails[i];

        if (!r->spent && fv_rule_matches(r, d, from, to)) {
            ret = -(int)r->value;
            if (r->once) {
                r->spent = true;
            }
            break;
        }
    }
    if (!ret) {
        ret = fv_fsm_set(d, to, &data_fd);
    }
    mig->data_fd = ret ? -1 : data_fd;
    end = fv_now_us();
    fv_log("transition %u %s %s %" PRId64 " %" PRId64 " %s",
           d->group->number, fv_state_name(from, b1, sizeof(b1)),
           fv_state_name(to, b2, sizeof(b2)), begin, end,
           ret ? fv_errno_name(-ret, b3, sizeof(b3)) : "ok");
    return ret;
}

/* The kernel's vfio_check_feature(): 1 to go on, else the result */
static int fv_check_feature(uint32_t flags, size_t argsz, uint32_t ops,
                            size_t minsz)
{
    if ((flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET)) &
        ~ops) {
        return -EINVAL;
    }
    if (flags & VFIO_DEVICE_FEATURE_PROBE) {
        return 0;
    }
    if (!(flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET))) {
        return -EINVAL;
    }
    if (argsz < minsz) {
        return -EINVAL;
    }
    return 1;
}

static int fv_device_feature(FakeDevice *d, struct vfio_device_feature *feat)
{
    const size_t minsz = offsetof(struct vfio_device_feature, data);
    const uint32_t get = VFIO_DEVICE_FEATURE_GET;
    const uint32_t set = VFIO_DEVICE_FEATURE_SET;
    uint32_t flags;
    size_t argsz;
    int ret;

    if (feat->argsz < minsz) {
        return -EINVAL;
    }
    flags = feat->flags;
    argsz = feat->argsz - minsz;
    if (flags & ~(VFIO_DEVICE_FEATURE_MASK | get | set |
                  VFIO_DEVICE_FEATURE_PROBE)) {
        return -EINVAL;
    }
    if (!(flags & VFIO_DEVICE_FEATURE_PROBE) && (flags & set) &&
        (flags & get)) {
        return -EINVAL;
    }

    switch (flags & VFIO_DEVICE_FEATURE_MASK) {
    case VFIO_DEVICE_FEATURE_MIGRATION: {
        struct vfio_device_feature_migration *mig = (void *)feat->data;

        ret = fv_check_feature(flags, argsz, get, sizeof(*mig));
        if (ret != 1) {
            return ret;
        }
        mig->flags = fv_cfg.mig_flags;
        return 0;
    }
    case VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE: {
        struct vfio_device_feature_mig_state *mig = (void *)feat->data;

        ret = fv_check_feature(flags, argsz, get | set, sizeof(*mig));
        if (ret != 1) {
            return ret;
        }
        if (flags & get) {
            mig->device_state = d->state;
            mig->data_fd = -1;
            return 0;
        }
        return fv_mig_set_state(d, mig);
    }
    case VFIO_DEVICE_FEATURE_MIG_DATA_SIZE: {
        struct vfio_device_feature_mig_data_size *size = (void *)feat->data;

        ret = fv_check_feature(flags, argsz, get, sizeof(*size));
        if (ret != 1) {
            return ret;
        }
        if (d->sess && !d->sess->resuming) {
            size->stop_copy_length = d->sess->len - d->sess->pos;
        } else {
            size->stop_copy_length = FV_HDR_SIZE + fv_cfg.state_size;
        }
        return 0;
    }
    default:
        return -ENOTTY;
    }
}

static int fv_region_info(struct vfio_region_info *info)
{
    const size_t minsz = offsetof(struct vfio_region_info, offset) +
                         sizeof(info->offset);

    if (info->argsz < minsz || info->index >= FV_NUM_REGIONS) {
        return -EINVAL;
    }
    info->offset = (uint64_t)info->index << FV_REGION_SHIFT;
    info->cap_offset = 0;
    switch (info->index) {
    case VFIO_PCI_BAR0_REGION_INDEX:
        info->size = FV_BAR0_SIZE;
        info->flags = VFIO_REGION_INFO_FLAG_READ |
                      VFIO_REGION_INFO_FLAG_WRITE;
        break;
    case VFIO_PCI_CONFIG_REGION_INDEX:
        info->size = FV_CONFIG_SIZE;
        info->flags = VFIO_REGION_INFO_FLAG_READ |
                      VFIO_REGION_INFO_FLAG_WRITE;
        break;
    case VFIO_PCI_VGA_REGION_INDEX:
        return -EINVAL;
    default:
        info->size = 0;
        info->flags = 0;
        break;
    }
    return 0;
}

static uint32_t fv_irq_count(uint32_t index)
{
    switch (index) {
    case VFIO_PCI_INTX_IRQ_INDEX:
    case VFIO_PCI_ERR_IRQ_INDEX:
    case VFIO_PCI_REQ_IRQ_INDEX:
        return 1;
    default:
        return 0;
    }
}

static int fv_irq_info(struct vfio_irq_info *info)
{
    const size_t minsz = offsetof(struct vfio_irq_info, count) +
                         sizeof(info->count);

    if (info->argsz < minsz || info->index >= FV_NUM_IRQS) {
        return -EINVAL;
    }
    info->flags = VFIO_IRQ_INFO_EVENTFD;
    if (info->index == VFIO_PCI_INTX_IRQ_INDEX) {
        info->flags |= VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED;
    } else {
        info->flags |= VFIO_IRQ_INFO_NORESIZE;
    }
    info->count = fv_irq_count(info->index);
    return 0;
}

static int fv_set_irqs(struct vfio_irq_set *set)
{
    const size_t minsz = offsetof(struct vfio_irq_set, count) +
                         sizeof(set->count);
    uint32_t data = set->flags & VFIO_IRQ_SET_DATA_TYPE_MASK;
    uint32_t action = set->flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
    uint32_t max;
    size_t size;

    if (set->argsz < minsz || set->index >= FV_NUM_IRQS ||
        set->count >= UINT32_MAX - set->start ||
        (set->flags & ~(VFIO_IRQ_SET_DATA_TYPE_MASK |
                        VFIO_IRQ_SET_ACTION_TYPE_MASK))) {
        return -EINVAL;
    }
    switch (data) {
    case VFIO_IRQ_SET_DATA_NONE:
        size = 0;
        break;
    case VFIO_IRQ_SET_DATA_BOOL:
        size = 1;
        break;
    case VFIO_IRQ_SET_DATA_EVENTFD:
        size = sizeof(int32_t);
        break;
    default:
        return -EINVAL;
    }
    if (action != VFIO_IRQ_SET_ACTION_MASK &&
        action != VFIO_IRQ_SET_ACTION_UNMASK &&
        action != VFIO_IRQ_SET_ACTION_TRIGGER) {
        return -EINVAL;
    }
    max = fv_irq_count(set->index);
    if (set->start >= max || set->start + set->count > max ||
        set->argsz - minsz < (uint64_t)set->count * size) {
        return -EINVAL;
    }
    if (set->index != VFIO_PCI_INTX_IRQ_INDEX &&
        action != VFIO_IRQ_SET_ACTION_TRIGGER) {
        return -ENOTTY;
    }
    /* The fake device never raises interrupts: accepting is enough */
    return 0;
}

static ssize_t fv_device_rw(FakeDevice *d, void *buf, size_t count,
                            uint64_t off, bool write)
{
    uint64_t index = off >> FV_REGION_SHIFT;
    uint64_t pos = off & FV_REGION_MASK;
    uint8_t *p = buf;
    size_t i, size;

    if ((int64_t)off < 0) {
        return -EINVAL;
    }
    switch (index) {
    case VFIO_PCI_BAR0_REGION_INDEX:
        size = FV_BAR0_SIZE;
        break;
    case VFIO_PCI_CONFIG_REGION_INDEX:
        size = FV_CONFIG_SIZE;
        break;
    default:
        return -EINVAL;
    }
    if (pos >= size) {
        return -EINVAL;
    }
    count = FV_MIN(count, size - pos);
    if (index == VFIO_PCI_BAR0_REGION_INDEX) {
        if (write) {
            memcpy(d->bar0 + pos, buf, count);
        } else {
            memcpy(buf, d->bar0 + pos, count);
        }
        return count;
    }
    for (i = 0; i < count; i++) {
        unsigned o = pos + i;
        uint8_t m = fv_config_wmask(o);

        if (write) {
            d->config[o] = (d->config[o] & ~m) | (p[i] & m);
        } else {
            p[i] = d->config[o];
        }
    }
    return count;
}

static int fv_device_ioctl(FakeFile *f, uint32_t cmd, void *arg)
{
    FakeDevice *d = f->dev;

    switch (cmd) {
    case VFIO_DEVICE_GET_INFO: {
        struct vfio_device_info *info = arg;

        if (!info) {
            return -EFAULT;
        }
        if (info->argsz < offsetof(struct vfio_device_info, num_irqs) +
                          sizeof(info->num_irqs)) {
            return -EINVAL;
        }
        info->flags = VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET;
        info->num_regions = FV_NUM_REGIONS;
        info->num_irqs = FV_NUM_IRQS;
        return 0;
    }
    case VFIO_DEVICE_GET_REGION_INFO:
        return arg ? fv_region_info(arg) : -EFAULT;
    case VFIO_DEVICE_GET_IRQ_INFO:
        return arg ? fv_irq_info(arg) : -EFAULT;
    case VFIO_DEVICE_SET_IRQS:
        return arg ? fv_set_irqs(arg) : -EFAULT;
    case VFIO_DEVICE_RESET:
        if (fv_cfg.reset_errno && d->state != FV_RUNNING) {
            char name[24];

            fv_log("reset-failed %u %" PRId64 " %s", d->group->number,
                   fv_now_us(),
                   fv_errno_name(fv_cfg.reset_errno, name, sizeof(name)));
            return -(int)fv_cfg.reset_errno;
        }
        fv_device_hw_reset(d);
        fv_log("reset %u %" PRId64, d->group->number, fv_now_us());
        return 0;
    case VFIO_DEVICE_GET_PCI_HOT_RESET_INFO:
    case VFIO_DEVICE_PCI_HOT_RESET:
        return -ENODEV;
    case VFIO_DEVICE_FEATURE:
        return arg ? fv_device_feature(d, arg) : -EFAULT;
    default:
        return -ENOTTY;
    }
}

/* ---------------------------------------------------------------------- */
/* container and group */

static void fv_container_put(FakeContainer *c)
{
    if (--c->refs == 0) {
        free(c);
    }
}

static void fv_group_detach(FakeGroup *g)
{
    FakeContainer *c = g->container;

    if (!c) {
        return;
    }
    g->container = NULL;
    if (--c->ngroups == 0) {
        c->iommu_type = 0;
    }
    fv_container_put(c);
}

static int fv_iommu_info(struct vfio_iommu_type1_info *info)
{
    const size_t minsz = offsetof(struct vfio_iommu_type1_info, iova_pgsizes)
                         + sizeof(info->iova_pgsizes);
    static const struct {
        uint64_t start, end;
    } ranges[] = {
        { 0, 0xfedfffffULL },
        { 0xfef00000ULL, (1ULL << 48) - 1 },
    };
    const size_t nr = sizeof(ranges) / sizeof(ranges[0]);
    const size_t base = sizeof(*info);
    const size_t iova_size =
        sizeof(struct vfio_iommu_type1_info_cap_iova_range) +
        nr * sizeof(struct vfio_iova_range);
    const size_t avail_off = base + ((iova_size + 7) & ~(size_t)7);
    const size_t total = avail_off +
        ((sizeof(struct vfio_iommu_type1_info_dma_avail) + 7) & ~(size_t)7);
    struct vfio_iommu_type1_info_cap_iova_range *iova;
    struct vfio_iommu_type1_info_dma_avail *avail;
    size_t i;

    if (info->argsz < minsz) {
        return -EINVAL;
    }
    info->flags = VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS;
    info->iova_pgsizes = 0x40201000ULL;     /* 4K, 2M, 1G */
    if (info->argsz < total) {
        if (info->argsz >= base) {
            info->cap_offset = 0;
        }
        info->argsz = total;
        return 0;
    }
    memset((uint8_t *)info + base, 0, total - base);
    iova = (void *)((uint8_t *)info + base);
    iova->header.id = VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE;
    iova->header.version = 1;
    iova->header.next = avail_off;
    iova->nr_iovas = nr;
    for (i = 0; i < nr; i++) {
        iova->iova_ranges[i].start = ranges[i].start;
        iova->iova_ranges[i].end = ranges[i].end;
    }
    avail = (void *)((uint8_t *)info + avail_off);
    avail->header.id = VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL;
    avail->header.version = 1;
    avail->header.next = 0;
    avail->avail = 65535;
    info->cap_offset = base;
    return 0;
}

static int fv_map_dma(struct vfio_iommu_type1_dma_map *map)
{
    const size_t minsz = offsetof(struct vfio_iommu_type1_dma_map, size) +
                         sizeof(map->size);
    uint64_t end;

    if (map->argsz < minsz ||
        (map->flags & ~(VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE |
                        VFIO_DMA_MAP_FLAG_VADDR))) {
        return -EINVAL;
    }
    if (!map->size || ((map->iova | map->size | map->vaddr) &
                       (FV_MIN_PAGE - 1))) {
        return -EINVAL;
    }
    if (__builtin_add_overflow(map->iova, map->size - 1, &end) ||
        __builtin_add_overflow(map->vaddr, map->size - 1, &end)) {
        return -EINVAL;
    }
    return 0;
}

static int fv_unmap_dma(struct vfio_iommu_type1_dma_unmap *unmap)
{
    const size_t minsz = offsetof(struct vfio_iommu_type1_dma_unmap, size) +
                         sizeof(unmap->size);

    if (unmap->argsz < minsz ||
        (unmap->flags & ~(VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP |
                          VFIO_DMA_UNMAP_FLAG_ALL |
                          VFIO_DMA_UNMAP_FLAG_VADDR))) {
        return -EINVAL;
    }
    if (unmap->flags & VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP) {
        /* IOMMU dirty tracking is not offered */
        return -EINVAL;
    }
    if ((unmap->flags & VFIO_DMA_UNMAP_FLAG_ALL) &&
        (unmap->iova || unmap->size)) {
        return -EINVAL;
    }
    if ((unmap->iova | unmap->size) & (FV_MIN_PAGE - 1)) {
        return -EINVAL;
    }
    return 0;
}

static int fv_container_ioctl(FakeFile *f, uint32_t cmd, void *arg)
{
    FakeContainer *c = f->container;
    uint32_t val = (uint32_t)(uintptr_t)arg;

    switch (cmd) {
    case VFIO_GET_API_VERSION:
        return VFIO_API_VERSION;
    case VFIO_CHECK_EXTENSION:
        switch (val) {
        case VFIO_TYPE1_IOMMU:
        case VFIO_TYPE1v2_IOMMU:
        case VFIO_UNMAP_ALL:
            return 1;
        case VFIO_UPDATE_VADDR:
        case VFIO_DMA_CC_IOMMU:
            return c->iommu_type ? 1 : 0;
        default:
            return 0;
        }
    case VFIO_SET_IOMMU:
        if (c->iommu_type || !c->ngroups) {
            return -EINVAL;
        }
        if (val != VFIO_TYPE1_IOMMU && val != VFIO_TYPE1v2_IOMMU) {
            return -ENODEV;
        }
        c->iommu_type = val;
        return 0;
    case VFIO_IOMMU_GET_INFO:
    case VFIO_IOMMU_MAP_DMA:
    case VFIO_IOMMU_UNMAP_DMA:
        if (!c->iommu_type) {
            return -EINVAL;
        }
        if (!arg) {
            return -EFAULT;
        }
        if (cmd == VFIO_IOMMU_GET_INFO) {
            return fv_iommu_info(arg);
        }
        return cmd == VFIO_IOMMU_MAP_DMA ? fv_map_dma(arg) :
                                           fv_unmap_dma(arg);
    default:
        return -ENOTTY;
    }
}

static int fv_group_ioctl(FakeFile *f, uint32_t cmd, void *arg)
{
    FakeGroup *g = f->group;

    switch (cmd) {
    case VFIO_GROUP_GET_STATUS: {
        struct vfio_group_status *st = arg;

        if (!st) {
            return -EFAULT;
        }
        if (st->argsz < sizeof(*st)) {
            return -EINVAL;
        }
        st->flags = VFIO_GROUP_FLAGS_VIABLE;
        if (g->container) {
            st->flags |= VFIO_GROUP_FLAGS_CONTAINER_SET;
        }
        return 0;
    }
    case VFIO_GROUP_SET_CONTAINER: {
        FakeFile *cf;

        if (!arg) {
            return -EFAULT;
        }
        if (g->container) {
            return -EINVAL;
        }
        cf = fv_file_at(*(int *)arg);
        if (!cf || cf->kind != FV_KIND_CONTAINER) {
            return *(int *)arg < 0 ? -EBADF : -EINVAL;
        }
        g->container = cf->container;
        cf->container->refs++;
        cf->container->ngroups++;
        return 0;
    }
    case VFIO_GROUP_UNSET_CONTAINER:
        if (!g->container) {
            return -EINVAL;
        }
        if (g->device_fds) {
            return -EBUSY;
        }
        fv_group_detach(g);
        return 0;
    case VFIO_GROUP_GET_DEVICE_FD: {
        const char *name = arg;
        FakeDevice *d = g->dev;
        FakeFile *df;
        int fd;

        if (!name) {
            return -EFAULT;
        }
        if (!g->container || !g->container->iommu_type) {
            return -EINVAL;
        }
        fd = fv_add_file(FV_KIND_DEVICE, "fakevfio-device", true, &df);
        if (fd < 0) {
            return fd;
        }
        df->group = g;
        df->dev = d;
        if (g->device_fds++ == 0) {
            fv_device_hw_reset(d);
            snprintf(d->name, sizeof(d->name), "%s", name);
        }
        fv_log("device %u %s", g->number, d->name);
        return fd;
    }
    default:
        return -ENOTTY;
    }
}

/* ---------------------------------------------------------------------- */
/* data fds */

static int fv_data_ioctl(FakeFile *f, uint32_t cmd, void *arg)
{
    FakeSession *s = f->sess;

    if (cmd == VFIO_MIG_GET_PRECOPY_INFO && !s->resuming) {
        struct vfio_precopy_info *info = arg;
        uint32_t st = s->dev->state;

        if (!info) {
            return -EFAULT;
        }
        if (info->argsz < offsetof(struct vfio_precopy_info, dirty_bytes) +
                          sizeof(info->dirty_bytes)) {
            return -EINVAL;
        }
        if (!s->attached || (st != FV_PRE_COPY && st != FV_PRE_COPY_P2P)) {
            return -EINVAL;
        }
        info->flags = 0;
        info->initial_bytes = s->pos < s->precopy_end ?
                              s->precopy_end - s->pos : 0;
        info->dirty_bytes = 0;
        return 0;
    }
    return -ENOTTY;
}

static ssize_t fv_data_read(FakeSession *s, void *buf, size_t count)
{
    size_t limit, n;

    if (s->resuming) {
        return -EINVAL;
    }
    if (!s->attached) {
        return -ENODEV;
    }
    limit = s->precopy ? s->precopy_end : s->len;
    if (s->pos >= limit && s->precopy) {
        return -ENOMSG;
    }
    n = FV_MIN(count, limit - s->pos);
    memcpy(buf, s->buf + s->pos, n);
    s->pos += n;
    if (s->pos == s->len && !s->logged) {
        s->logged = true;
        fv_log("save %u %" PRIu64 " %016" PRIx64, s->dev->group->number,
               (uint64_t)(s->len - FV_HDR_SIZE),
               fv_get_le(s->buf + 24, 8));
    }
    return n;
}

static ssize_t fv_data_write(FakeSession *s, const void *buf, size_t count)
{
    if (!s->resuming) {
        return -EINVAL;
    }
    if (!s->attached || s->logged) {
        return -ENODEV;
    }
    if (!count) {
        return 0;
    }
    if (count > FV_HDR_SIZE + FV_MAX_STATE - s->len) {
        return -EFBIG;
    }
    if (s->len + count > s->cap) {
        size_t cap = s->cap ? s->cap : 65536;
        uint8_t *nb;

        while (cap < s->len + count) {
            cap *= 2;
        }
        nb = realloc(s->buf, cap);
        if (!nb) {
            return -ENOMEM;
        }
        s->buf = nb;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, buf, count);
    s->len += count;
    return count;
}

/* ---------------------------------------------------------------------- */
/* dispatch */

static int fv_open_vfio(const char *path, int flags)
{
    const char *rest = path + strlen("/dev/vfio/");
    bool cloexec = flags & O_CLOEXEC;
    FakeFile *f;
    int fd;

    pthread_mutex_lock(&fv_mutex);
    fv_load_config();
    if (!strcmp(rest, "vfio")) {
        FakeContainer *c = calloc(1, sizeof(*c));

        if (!c) {
            fd = -ENOMEM;
            goto out;
        }
        fd = fv_add_file(FV_KIND_CONTAINER, "fakevfio-container", cloexec,
                         &f);
        if (fd < 0) {
            free(c);
            goto out;
        }
        c->refs = 1;
        f->container = c;
    } else {
        uint64_t number;
        FakeGroup *g;
        char name[40];

        if (!isdigit((unsigned char)rest[0]) ||
            !fv_parse_u64(rest, INT32_MAX, &number)) {
            fd = -ENOENT;
            goto out;
        }
        g = fv_group_get(number);
        if (!g) {
            fd = -ENOMEM;
            goto out;
        }
        if (g->open) {
            fd = -EBUSY;
            goto out;
        }
        snprintf(name, sizeof(name), "fakevfio-group-%u", g->number);
        fd = fv_add_file(FV_KIND_GROUP, name, cloexec, &f);
        if (fd < 0) {
            goto out;
        }
        g->open = true;
        f->group = g;
    }
out:
    pthread_mutex_unlock(&fv_mutex);
    if (fd < 0) {
        errno = -fd;
        return -1;
    }
    return fd;
}

static void fv_release_device(FakeGroup *g)
{
    FakeDevice *d = g->dev;

    if (--g->device_fds) {
        return;
    }
    /* last close of the device: like the kernel's close_device */
    fv_device_hw_reset(d);
    fv_log("release %u %" PRId64, g->number, fv_now_us());
    if (!g->open) {
        fv_group_detach(g);
    }
}

static void fv_close_fake(int fd)
{
    FakeFile *f;

    pthread_mutex_lock(&fv_mutex);
    f = fv_lookup(fd);
    if (!f) {
        pthread_mutex_unlock(&fv_mutex);
        return;
    }
    __atomic_store_n(&fv_files[fd], NULL, __ATOMIC_RELEASE);
    switch (f->kind) {
    case FV_KIND_CONTAINER:
        fv_container_put(f->container);
        break;
    case FV_KIND_GROUP:
        f->group->open = false;
        if (!f->group->device_fds) {
            fv_group_detach(f->group);
        }
        break;
    case FV_KIND_DEVICE:
        fv_release_device(f->group);
        break;
    case FV_KIND_DATA: {
        FakeSession *s = f->sess;

        s->fd_open = false;
        if (s->resuming) {
            fv_resume_finish(s);
        }
        if (!s->attached) {
            fv_session_free(s);
        }
        break;
    }
    }
    free(f);
    pthread_mutex_unlock(&fv_mutex);
}

/* Returns true if fd is fake and *ret holds the result (errno set) */
static bool fv_fake_ioctl(int fd, unsigned long request, void *arg, int *ret)
{
    uint32_t cmd = (uint32_t)request;
    FakeFile *f;
    int r;

    pthread_mutex_lock(&fv_mutex);
    f = fv_lookup(fd);
    if (!f) {
        pthread_mutex_unlock(&fv_mutex);
        return false;
    }
    switch (f->kind) {
    case FV_KIND_CONTAINER:
        r = fv_container_ioctl(f, cmd, arg);
        break;
    case FV_KIND_GROUP:
        r = fv_group_ioctl(f, cmd, arg);
        break;
    case FV_KIND_DEVICE:
        r = fv_device_ioctl(f, cmd, arg);
        break;
    default:
        r = fv_data_ioctl(f, cmd, arg);
        break;
    }
    pthread_mutex_unlock(&fv_mutex);
    if (r < 0) {
        errno = -r;
        r = -1;
    }
    *ret = r;
    return true;
}

/*
 * read/write/pread/pwrite on a fake fd.  offset < 0 means no offset (use
 * the file position).  Returns true if fd is fake, with *ret set.
 */
static bool fv_fake_rw(int fd, void *buf, size_t count, off64_t offset,
                       bool write, ssize_t *ret)
{
    FakeFile *f;
    ssize_t r;

    pthread_mutex_lock(&fv_mutex);
    f = fv_lookup(fd);
    if (!f) {
        pthread_mutex_unlock(&fv_mutex);
        return false;
    }
    switch (f->kind) {
    case FV_KIND_DEVICE:
        r = fv_device_rw(f->dev, buf, count,
                         offset < 0 ? f->pos : (uint64_t)offset, write);
        if (offset < 0 && r > 0) {
            f->pos += r;
        }
        break;
    case FV_KIND_DATA:
        if (offset >= 0) {
            r = -ESPIPE;
        } else if (write) {
            r = fv_data_write(f->sess, buf, count);
        } else {
            r = fv_data_read(f->sess, buf, count);
        }
        break;
    default:
        r = -EINVAL;
        break;
    }
    pthread_mutex_unlock(&fv_mutex);
    if (r < 0) {
        errno = -r;
        r = -1;
    }
    *ret = r;
    return true;
}

/* ---------------------------------------------------------------------- */
/* interposed libc functions */

static inline bool fv_is_vfio_path(const char *path)
{
    return path && !strncmp(path, "/dev/vfio/", 10);
}

static inline bool fv_needs_mode(int flags)
{
    return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE;
}

#define FV_GET_MODE(mode, flags)                \
    do {                                        \
        if (fv_needs_mode(flags)) {             \
            va_list ap_;                        \
            va_start(ap_, flags);               \
            mode = va_arg(ap_, mode_t);         \
            va_end(ap_);                        \
        }                                       \
    } while (0)

FV_EXPORT int open(const char *path, int flags, ...)
{
    mode_t mode = 0;

    FV_GET_MODE(mode, flags);
    if (fv_is_vfio_path(path)) {
        return fv_open_vfio(path, flags);
    }
    return ((OpenFn *)fv_real(R_OPEN))(path, flags, mode);
}

FV_EXPORT int open64(const char *path, int flags, ...)
{
    mode_t mode = 0;

    FV_GET_MODE(mode, flags);
    if (fv_is_vfio_path(path)) {
        return fv_open_vfio(path, flags);
    }
    return ((OpenFn *)fv_real(R_OPEN64))(path, flags, mode);
}

FV_EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
    mode_t mode = 0;

    FV_GET_MODE(mode, flags);
    if (fv_is_vfio_path(path)) {
        return fv_open_vfio(path, flags);
    }
    return ((OpenatFn *)fv_real(R_OPENAT))(dirfd, path, flags, mode);
}

FV_EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
    mode_t mode = 0;

    FV_GET_MODE(mode, flags);
    if (fv_is_vfio_path(path)) {
        return fv_open_vfio(path, flags);
    }
    return ((OpenatFn *)fv_real(R_OPENAT64))(dirfd, path, flags, mode);
}

FV_EXPORT int __open_2(const char *path, int flags)
{
    if (fv_is_vfio_path(path)) {
        return fv_open_vfio(path, flags);
    }
    return ((Open2Fn *)fv_real(R_OPEN_2))(path, flags);
}

FV_EXPORT int __open64_2(const char *path, int flags)
{
    if (fv_is_vfio_path(path)) {
        return fv_open_vfio(path, flags);
    }
    return ((Open2Fn *)fv_real(R_OPEN64_2))(path, flags);
}

FV_EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
    if (fv_is_vfio_path(path)) {
        return fv_open_vfio(path, flags);
    }
    return ((Openat2Fn *)fv_real(R_OPENAT_2))(dirfd, path, flags);
}

FV_EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
    if (fv_is_vfio_path(path)) {
        return fv_open_vfio(path, flags);
    }
    return ((Openat2Fn *)fv_real(R_OPENAT64_2))(dirfd, path, flags);
}

FV_EXPORT int ioctl(int fd, unsigned long request, ...)
{
    va_list ap;
    void *arg;
    int ret;

    va_start(ap, request);
    arg = va_arg(ap, void *);
    va_end(ap);
    if (fv_is_fake(fd) && fv_fake_ioctl(fd, request, arg, &ret)) {
        return ret;
    }
    return ((IoctlFn *)fv_real(R_IOCTL))(fd, request, arg);
}

FV_EXPORT ssize_t read(int fd, void *buf, size_t count)
{
    ssize_t ret;

    if (fv_is_fake(fd) && fv_fake_rw(fd, buf, count, -1, false, &ret)) {
        return ret;
    }
    return ((ReadFn *)fv_real(R_READ))(fd, buf, count);
}

FV_EXPORT ssize_t __read_chk(int fd, void *buf, size_t count, size_t buflen)
{
    ssize_t ret;

    if (fv_is_fake(fd)) {
        if (count > buflen) {
            abort();
        }
        if (fv_fake_rw(fd, buf, count, -1, false, &ret)) {
            return ret;
        }
    }
    return ((ReadChkFn *)fv_real(R_READ_CHK))(fd, buf, count, buflen);
}

FV_EXPORT ssize_t write(int fd, const void *buf, size_t count)
{
    ssize_t ret;

    if (fv_is_fake(fd) &&
        fv_fake_rw(fd, (void *)buf, count, -1, true, &ret)) {
        return ret;
    }
    return ((WriteFn *)fv_real(R_WRITE))(fd, buf, count);
}

/* Offsets of pread/pwrite must be >= 0: negative ones are EINVAL */
static bool fv_fake_prw(int fd, void *buf, size_t count, off64_t offset,
                        bool write, ssize_t *ret)
{
    if (!fv_is_fake(fd)) {
        return false;
    }
    if (offset < 0) {
        errno = EINVAL;
        *ret = -1;
        return true;
    }
    return fv_fake_rw(fd, buf, count, offset, write, ret);
}

FV_EXPORT ssize_t pread(int fd, void *buf, size_t count, off_t offset)
{
    ssize_t ret;

    if (fv_fake_prw(fd, buf, count, offset, false, &ret)) {
        return ret;
    }
    return ((PreadFn *)fv_real(R_PREAD))(fd, buf, count, offset);
}

FV_EXPORT ssize_t pread64(int fd, void *buf, size_t count, off64_t offset)
{
    ssize_t ret;

    if (fv_fake_prw(fd, buf, count, offset, false, &ret)) {
        return ret;
    }
    return ((Pread64Fn *)fv_real(R_PREAD64))(fd, buf, count, offset);
}

FV_EXPORT ssize_t __pread_chk(int fd, void *buf, size_t count, off_t offset,
                              size_t buflen)
{
    ssize_t ret;

    if (fv_is_fake(fd) && count > buflen) {
        abort();
    }
    if (fv_fake_prw(fd, buf, count, offset, false, &ret)) {
        return ret;
    }
    return ((PreadChkFn *)fv_real(R_PREAD_CHK))(fd, buf, count, offset,
                                                buflen);
}

FV_EXPORT ssize_t __pread64_chk(int fd, void *buf, size_t count,
                                off64_t offset, size_t buflen)
{
    ssize_t ret;

    if (fv_is_fake(fd) && count > buflen) {
        abort();
    }
    if (fv_fake_prw(fd, buf, count, offset, false, &ret)) {
        return ret;
    }
    return ((Pread64ChkFn *)fv_real(R_PREAD64_CHK))(fd, buf, count, offset,
                                                    buflen);
}

FV_EXPORT ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset)
{
    ssize_t ret;

    if (fv_fake_prw(fd, (void *)buf, count, offset, true, &ret)) {
        return ret;
    }
    return ((PwriteFn *)fv_real(R_PWRITE))(fd, buf, count, offset);
}

FV_EXPORT ssize_t pwrite64(int fd, const void *buf, size_t count,
                           off64_t offset)
{
    ssize_t ret;

    if (fv_fake_prw(fd, (void *)buf, count, offset, true, &ret)) {
        return ret;
    }
    return ((Pwrite64Fn *)fv_real(R_PWRITE64))(fd, buf, count, offset);
}

FV_EXPORT int close(int fd)
{
    if (fv_is_fake(fd)) {
        fv_close_fake(fd);
    }
    return ((CloseFn *)fv_real(R_CLOSE))(fd);
}
