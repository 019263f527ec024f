/* metacount: count (and optionally delay) the metadata operations a process
 * makes on paths under one folder. An LD_PRELOAD shim, built on demand by
 * scripts/bench/metacount.py (cc -shared -fPIC -O2 metacount.c -ldl).
 *
 * Environment:
 *   METACOUNT_PREFIX  absolute folder; only paths under it count (unset: the
 *                     shim passes every call through and writes nothing)
 *   METACOUNT_DIR     folder for the counts: each process appends one line to
 *                     <dir>/<pid>.tsv at exit, _exit, and before an exec
 *   METACOUNT_DELAY   microseconds to sleep per counted operation: "500"
 *                     (every kind) or "stat=500,create=1500,..." (per kind)
 *   METACOUNT_TRACE   folder: also a line per counted operation (its kind and
 *                     path) in <folder>/<pid>.trace, to find where they come from
 *
 * Kinds: stat (stat, lstat, fstatat, statx, access, faccessat, and their 64
 * and __xstat variants), fstat (fstat and fstatat(AT_EMPTY_PATH) of a file
 * under the prefix), open (an open without O_CREAT), create (an open with
 * O_CREAT, creat, fopen for writing), rename, unlink (unlink, unlinkat,
 * rmdir), readdir (opendir and fdopendir: one per directory listing, and a
 * direct getdents64 call; the entries readdir returns are not counted),
 * mkdir, link (link, symlink), other (utimensat, utime, readlink, chmod,
 * chown, truncate: attribute changes and reads that are neither). mknod and
 * mkfifo are creates. Not counted: statvfs (a filesystem's, not a file's),
 * calls on a descriptor other than fstat (the open was counted).
 *
 * Which symbols a program calls depends on how it was built: Python 3.11 on
 * glibc 2.36 calls stat64, lstat64, fstatat64, fstat64, open64, openat64,
 * opendir, fdopendir; bash calls stat, lstat, fstat, open; a binary built
 * before glibc 2.33 calls __xstat64 and friends; statx is called by newer
 * coreutils. Calls between glibc's own functions (opendir's open, fopen's
 * open) are internal and not seen: each is counted once, at its entry point.
 * Static binaries and raw syscalls escape the shim (strace -f -c sees all).
 *
 * Attribution: every count goes to an (owner, phase) pair. The owner is the
 * calling thread's (metacount_set_owner), else the process's
 * (metacount_set_process_owner), else 0; the phase is the process's
 * (metacount_set_phase), else 0. Programs that know nothing of the shim
 * count as owner 0, phase 0. Forked children inherit both and start
 * counting from zero; a vfork child (which shares the parent's memory)
 * never writes the parent's counts.
 *
 * Line format (tab-separated): pid, ppid, counts as phase.owner.kind=n
 * joined by commas, the command line (NULs as spaces).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <utime.h>
#include <unistd.h>
#include <pthread.h>

enum { K_STAT, K_FSTAT, K_OPEN, K_CREATE, K_RENAME, K_UNLINK, K_READDIR, K_MKDIR, K_LINK, K_OTHER, NKINDS };
static const char *KIND_NAMES[NKINDS] = {"stat", "fstat", "open", "create", "rename",
                                         "unlink", "readdir", "mkdir", "link", "other"};
#define NOWNERS 4
#define NPHASES 4

static long counts[NPHASES][NOWNERS][NKINDS];
static __thread int thread_owner = -1;
static int process_owner = 0;
static int process_phase = 0;
static int active = 0;
static char prefix[PATH_MAX];
static size_t prefix_len = 0;
static char outdir[PATH_MAX];
static long delay_ns[NKINDS];
static int any_delay = 0;
static pid_t counted_pid = 0;
static char tracedir[PATH_MAX]; /* METACOUNT_TRACE: one line per counted operation, for finding where they come from */
static __thread char last_path[PATH_MAX];

#define REAL(name) static __typeof__(name) *real_##name
#define LOAD(name)                                                         \
    ({                                                                     \
        if (!real_##name) real_##name = (__typeof__(real_##name))dlsym(RTLD_NEXT, #name); \
        real_##name;                                                       \
    })

/* ------------------------------------------------------------ paths */

static int under(const char *path) {
    int yes = strncmp(path, prefix, prefix_len) == 0 && (path[prefix_len] == '/' || path[prefix_len] == '\0');
    if (yes && tracedir[0]) snprintf(last_path, sizeof last_path, "%s", path);
    return yes;
}

/* Lexically normalise an absolute path in place ("." and ".." and "//"). */
static void normalise(char *path) {
    char out[PATH_MAX];
    size_t n = 0;
    const char *p = path;
    while (*p) {
        while (*p == '/') p++;
        if (!*p) break;
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 1 && p[0] == '.') {
        } else if (len == 2 && p[0] == '.' && p[1] == '.') {
            while (n > 0 && out[n - 1] != '/') n--;
            if (n > 0) n--;
        } else if (n + 1 + len < sizeof out) {
            out[n++] = '/';
            memcpy(out + n, p, len);
            n += len;
        }
        p += len;
    }
    if (n == 0) out[n++] = '/';
    out[n] = '\0';
    memcpy(path, out, n + 1);
}

static int fd_path(int fd, char *buf, size_t size) {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = syscall(SYS_readlink, link, buf, size - 1);
    if (n <= 0) return 0;
    buf[n] = '\0';
    return buf[0] == '/';
}

/* Whether ``path`` (relative to ``dirfd``) lies under the prefix. */
static int counted_at(int dirfd, const char *path) {
    if (!active || path == NULL) return 0;
    if (path[0] == '/') {
        if (!strstr(path, "/..") && !strstr(path, "/./")) return under(path);
        char full[PATH_MAX];
        snprintf(full, sizeof full, "%s", path);
        normalise(full);
        return under(full);
    }
    char full[PATH_MAX];
    if (dirfd == AT_FDCWD) {
        if (syscall(SYS_getcwd, full, sizeof full) <= 0) return 0;
    } else if (!fd_path(dirfd, full, sizeof full)) {
        return 0;
    }
    if (path[0] == '\0') return under(full);
    size_t n = strlen(full);
    snprintf(full + n, sizeof full - n, "/%s", path);
    normalise(full);
    return under(full);
}

static int counted_fd(int fd) {
    if (!active || fd < 0) return 0;
    char full[PATH_MAX];
    return fd_path(fd, full, sizeof full) && under(full);
}

/* ------------------------------------------------------------ counting */

static void hit(int kind) {
    int owner = thread_owner >= 0 ? thread_owner : process_owner;
    if (owner < 0 || owner >= NOWNERS) owner = 0;
    int phase = process_phase;
    if (phase < 0 || phase >= NPHASES) phase = 0;
    __atomic_fetch_add(&counts[phase][owner][kind], 1, __ATOMIC_RELAXED);
    if (tracedir[0]) {
        char line[PATH_MAX + 64], file[PATH_MAX + 32];
        int n = snprintf(line, sizeof line, "%d.%d.%s\t%s\n", phase, owner, KIND_NAMES[kind], last_path);
        snprintf(file, sizeof file, "%s/%d.trace", tracedir, (int)syscall(SYS_getpid));
        int fd = syscall(SYS_openat, AT_FDCWD, file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
        if (fd >= 0) {
            syscall(SYS_write, fd, line, n);
            syscall(SYS_close, fd);
        }
    }
    if (any_delay && delay_ns[kind]) {
        struct timespec t = {delay_ns[kind] / 1000000000L, delay_ns[kind] % 1000000000L};
        while (nanosleep(&t, &t) != 0 && errno == EINTR) {
        }
    }
}

static void flush(void) {
    if (!active || !outdir[0]) return;
    if ((pid_t)syscall(SYS_getpid) != counted_pid) return; /* a vfork child: the counts are its parent's */
    char line[8192];
    int n = snprintf(line, sizeof line, "%d\t%d\t", (int)counted_pid, (int)syscall(SYS_getppid));
    int first = 1;
    for (int p = 0; p < NPHASES; p++)
        for (int o = 0; o < NOWNERS; o++)
            for (int k = 0; k < NKINDS; k++) {
                long c = __atomic_exchange_n(&counts[p][o][k], 0, __ATOMIC_RELAXED);
                if (c && n < (int)sizeof line - 64)
                    n += snprintf(line + n, sizeof line - n, "%s%d.%d.%s=%ld", first ? "" : ",", p, o, KIND_NAMES[k], c);
                if (c) first = 0;
            }
    if (first) return; /* nothing counted: no line */
    line[n++] = '\t';
    int fd = syscall(SYS_openat, AT_FDCWD, "/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t got = syscall(SYS_read, fd, line + n, sizeof line - n - 2);
        syscall(SYS_close, fd);
        if (got > 0) {
            for (ssize_t i = 0; i < got; i++) {
                char c = line[n + i];
                if (c == '\0' || c == '\t' || c == '\n') line[n + i] = ' ';
            }
            n += got;
        }
    }
    while (n > 0 && line[n - 1] == ' ') n--;
    line[n++] = '\n';
    char file[PATH_MAX + 32];
    snprintf(file, sizeof file, "%s/%d.tsv", outdir, (int)counted_pid);
    fd = syscall(SYS_openat, AT_FDCWD, file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    if (fd >= 0) {
        syscall(SYS_write, fd, line, n); /* one write, appended: a line is whole or absent */
        syscall(SYS_close, fd);
    }
}

static void after_fork_in_child(void) {
    counted_pid = (pid_t)syscall(SYS_getpid);
    memset(counts, 0, sizeof counts);
}

static void parse_delay(const char *spec) {
    if (!spec || !*spec) return;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", spec);
    if (!strchr(buf, '=')) {
        long us = atol(buf);
        for (int k = 0; k < NKINDS; k++) delay_ns[k] = us * 1000L;
    } else {
        char *save = NULL;
        for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
            char *eq = strchr(item, '=');
            if (!eq) continue;
            *eq = '\0';
            for (int k = 0; k < NKINDS; k++)
                if (strcmp(item, KIND_NAMES[k]) == 0) delay_ns[k] = atol(eq + 1) * 1000L;
        }
    }
    for (int k = 0; k < NKINDS; k++)
        if (delay_ns[k]) any_delay = 1;
    if (any_delay) prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* else a 0.3 ms sleep takes 0.36 ms */
}

__attribute__((constructor)) static void start(void) {
    const char *p = getenv("METACOUNT_PREFIX");
    const char *d = getenv("METACOUNT_DIR");
    if (!p || p[0] != '/') return;
    snprintf(prefix, sizeof prefix, "%s", p);
    normalise(prefix);
    prefix_len = strlen(prefix);
    if (prefix_len == 1) prefix_len = 0; /* "/": everything */
    if (d) snprintf(outdir, sizeof outdir, "%s", d);
    const char *t = getenv("METACOUNT_TRACE");
    if (t) snprintf(tracedir, sizeof tracedir, "%s", t);
    parse_delay(getenv("METACOUNT_DELAY"));
    counted_pid = (pid_t)syscall(SYS_getpid);
    pthread_atfork(NULL, NULL, after_fork_in_child);
    active = 1;
}

__attribute__((destructor)) static void stop(void) { flush(); }

/* ------------------------------------------------------------ marks (ctypes) */

int metacount_active(void) { return active; }
int metacount_set_owner(int owner) {
    int before = thread_owner;
    thread_owner = owner;
    return before;
}
int metacount_set_process_owner(int owner) {
    int before = process_owner;
    process_owner = owner;
    return before;
}
int metacount_set_phase(int phase) {
    int before = process_phase;
    process_phase = phase;
    return before;
}
void metacount_flush(void) { flush(); }

/* ------------------------------------------------------------ exit and exec */

REAL(_exit);
void _exit(int status) {
    flush();
    LOAD(_exit)(status);
    for (;;) {
    }
}
REAL(_Exit);
void _Exit(int status) {
    flush();
    LOAD(_Exit)(status);
    for (;;) {
    }
}
REAL(execve);
int execve(const char *path, char *const argv[], char *const envp[]) {
    flush();
    return LOAD(execve)(path, argv, envp);
}
REAL(execv);
int execv(const char *path, char *const argv[]) {
    flush();
    return LOAD(execv)(path, argv);
}
REAL(execvp);
int execvp(const char *file, char *const argv[]) {
    flush();
    return LOAD(execvp)(file, argv);
}
REAL(execvpe);
int execvpe(const char *file, char *const argv[], char *const envp[]) {
    flush();
    return LOAD(execvpe)(file, argv, envp);
}
REAL(fexecve);
int fexecve(int fd, char *const argv[], char *const envp[]) {
    flush();
    return LOAD(fexecve)(fd, argv, envp);
}

/* ------------------------------------------------------------ stat family */

#define PATH_STAT(name, kind)                                   \
    REAL(name);                                                 \
    int name(const char *path, struct stat *buf) {              \
        if (counted_at(AT_FDCWD, path)) hit(kind);              \
        return LOAD(name)(path, buf);                           \
    }
#define PATH_STAT64(name, kind)                                 \
    REAL(name);                                                 \
    int name(const char *path, struct stat64 *buf) {            \
        if (counted_at(AT_FDCWD, path)) hit(kind);              \
        return LOAD(name)(path, buf);                           \
    }
PATH_STAT(stat, K_STAT)
PATH_STAT(lstat, K_STAT)
PATH_STAT64(stat64, K_STAT)
PATH_STAT64(lstat64, K_STAT)

REAL(fstat);
int fstat(int fd, struct stat *buf) {
    if (counted_fd(fd)) hit(K_FSTAT);
    return LOAD(fstat)(fd, buf);
}
REAL(fstat64);
int fstat64(int fd, struct stat64 *buf) {
    if (counted_fd(fd)) hit(K_FSTAT);
    return LOAD(fstat64)(fd, buf);
}

static void count_statat(int dirfd, const char *path, int flags) {
    if (path && path[0] == '\0' && (flags & AT_EMPTY_PATH)) {
        if (counted_fd(dirfd)) hit(K_FSTAT);
    } else if (counted_at(dirfd, path)) {
        hit(K_STAT);
    }
}
REAL(fstatat);
int fstatat(int dirfd, const char *path, struct stat *buf, int flags) {
    count_statat(dirfd, path, flags);
    return LOAD(fstatat)(dirfd, path, buf, flags);
}
REAL(fstatat64);
int fstatat64(int dirfd, const char *path, struct stat64 *buf, int flags) {
    count_statat(dirfd, path, flags);
    return LOAD(fstatat64)(dirfd, path, buf, flags);
}
REAL(statx);
int statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *buf) {
    count_statat(dirfd, path, flags);
    return LOAD(statx)(dirfd, path, flags, mask, buf);
}

/* Before glibc 2.33 stat() was an inline calling these: binaries built then
 * still call them (glibc keeps them as compatibility symbols, which dlsym
 * finds only by version). */
typedef int (*xstat_fn)(int, const char *, void *);
typedef int (*fxstat_fn)(int, int, void *);
typedef int (*fxstatat_fn)(int, int, const char *, void *, int);
static void *compat(const char *name) {
    void *f = dlsym(RTLD_NEXT, name);
    return f ? f : dlvsym(RTLD_NEXT, name, "GLIBC_2.2.5");
}
#define XSTAT(name)                                             \
    static xstat_fn real_##name;                                \
    int name(int ver, const char *path, void *buf) {            \
        if (!real_##name) real_##name = (xstat_fn)compat(#name); \
        if (counted_at(AT_FDCWD, path)) hit(K_STAT);            \
        return real_##name(ver, path, buf);                     \
    }
XSTAT(__xstat)
XSTAT(__xstat64)
XSTAT(__lxstat)
XSTAT(__lxstat64)
#define FXSTAT(name)                                            \
    static fxstat_fn real_##name;                               \
    int name(int ver, int fd, void *buf) {                      \
        if (!real_##name) real_##name = (fxstat_fn)compat(#name); \
        if (counted_fd(fd)) hit(K_FSTAT);                       \
        return real_##name(ver, fd, buf);                       \
    }
FXSTAT(__fxstat)
FXSTAT(__fxstat64)
#define FXSTATAT(name)                                                  \
    static fxstatat_fn real_##name;                                     \
    int name(int ver, int dirfd, const char *path, void *buf, int flags) { \
        if (!real_##name) real_##name = (fxstatat_fn)compat(#name);     \
        count_statat(dirfd, path, flags);                               \
        return real_##name(ver, dirfd, path, buf, flags);               \
    }
FXSTATAT(__fxstatat)
FXSTATAT(__fxstatat64)

REAL(access);
int access(const char *path, int mode) {
    if (counted_at(AT_FDCWD, path)) hit(K_STAT);
    return LOAD(access)(path, mode);
}
REAL(eaccess);
int eaccess(const char *path, int mode) {
    if (counted_at(AT_FDCWD, path)) hit(K_STAT);
    return LOAD(eaccess)(path, mode);
}
REAL(faccessat);
int faccessat(int dirfd, const char *path, int mode, int flags) {
    if (counted_at(dirfd, path)) hit(K_STAT);
    return LOAD(faccessat)(dirfd, path, mode, flags);
}

/* ------------------------------------------------------------ open family */

static void count_open(int dirfd, const char *path, int flags) {
    if (counted_at(dirfd, path)) hit((flags & O_CREAT) ? K_CREATE : K_OPEN);
}
static mode_t mode_of(int flags, va_list ap) {
    return (flags & (O_CREAT | __O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}
REAL(open);
int open(const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_of(flags, ap);
    va_end(ap);
    count_open(AT_FDCWD, path, flags);
    return LOAD(open)(path, flags, mode);
}
REAL(open64);
int open64(const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_of(flags, ap);
    va_end(ap);
    count_open(AT_FDCWD, path, flags);
    return LOAD(open64)(path, flags, mode);
}
REAL(openat);
int openat(int dirfd, const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_of(flags, ap);
    va_end(ap);
    count_open(dirfd, path, flags);
    return LOAD(openat)(dirfd, path, flags, mode);
}
REAL(openat64);
int openat64(int dirfd, const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_of(flags, ap);
    va_end(ap);
    count_open(dirfd, path, flags);
    return LOAD(openat64)(dirfd, path, flags, mode);
}
/* _FORTIFY_SOURCE's checked opens (no mode: they refuse O_CREAT). */
int __open_2(const char *, int);
int __open64_2(const char *, int);
int __openat_2(int, const char *, int);
int __openat64_2(int, const char *, int);
REAL(__open_2);
int __open_2(const char *path, int flags) {
    count_open(AT_FDCWD, path, flags);
    return LOAD(__open_2)(path, flags);
}
REAL(__open64_2);
int __open64_2(const char *path, int flags) {
    count_open(AT_FDCWD, path, flags);
    return LOAD(__open64_2)(path, flags);
}
REAL(__openat_2);
int __openat_2(int dirfd, const char *path, int flags) {
    count_open(dirfd, path, flags);
    return LOAD(__openat_2)(dirfd, path, flags);
}
REAL(__openat64_2);
int __openat64_2(int dirfd, const char *path, int flags) {
    count_open(dirfd, path, flags);
    return LOAD(__openat64_2)(dirfd, path, flags);
}
REAL(creat);
int creat(const char *path, mode_t mode) {
    count_open(AT_FDCWD, path, O_CREAT);
    return LOAD(creat)(path, mode);
}
REAL(creat64);
int creat64(const char *path, mode_t mode) {
    count_open(AT_FDCWD, path, O_CREAT);
    return LOAD(creat64)(path, mode);
}
static int fopen_flags(const char *mode) { return (mode && (strchr(mode, 'w') || strchr(mode, 'a'))) ? O_CREAT : 0; }
REAL(fopen);
FILE *fopen(const char *path, const char *mode) {
    count_open(AT_FDCWD, path, fopen_flags(mode));
    return LOAD(fopen)(path, mode);
}
REAL(fopen64);
FILE *fopen64(const char *path, const char *mode) {
    count_open(AT_FDCWD, path, fopen_flags(mode));
    return LOAD(fopen64)(path, mode);
}

/* ------------------------------------------------------------ names */

REAL(rename);
int rename(const char *from, const char *to) {
    if (counted_at(AT_FDCWD, from) || counted_at(AT_FDCWD, to)) hit(K_RENAME);
    return LOAD(rename)(from, to);
}
REAL(renameat);
int renameat(int fromfd, const char *from, int tofd, const char *to) {
    if (counted_at(fromfd, from) || counted_at(tofd, to)) hit(K_RENAME);
    return LOAD(renameat)(fromfd, from, tofd, to);
}
REAL(renameat2);
int renameat2(int fromfd, const char *from, int tofd, const char *to, unsigned int flags) {
    if (counted_at(fromfd, from) || counted_at(tofd, to)) hit(K_RENAME);
    return LOAD(renameat2)(fromfd, from, tofd, to, flags);
}
REAL(unlink);
int unlink(const char *path) {
    if (counted_at(AT_FDCWD, path)) hit(K_UNLINK);
    return LOAD(unlink)(path);
}
REAL(unlinkat);
int unlinkat(int dirfd, const char *path, int flags) {
    if (counted_at(dirfd, path)) hit(K_UNLINK);
    return LOAD(unlinkat)(dirfd, path, flags);
}
REAL(rmdir);
int rmdir(const char *path) {
    if (counted_at(AT_FDCWD, path)) hit(K_UNLINK);
    return LOAD(rmdir)(path);
}
REAL(mkdir);
int mkdir(const char *path, mode_t mode) {
    if (counted_at(AT_FDCWD, path)) hit(K_MKDIR);
    return LOAD(mkdir)(path, mode);
}
REAL(mkdirat);
int mkdirat(int dirfd, const char *path, mode_t mode) {
    if (counted_at(dirfd, path)) hit(K_MKDIR);
    return LOAD(mkdirat)(dirfd, path, mode);
}
REAL(link);
int link(const char *from, const char *to) {
    if (counted_at(AT_FDCWD, to)) hit(K_LINK);
    return LOAD(link)(from, to);
}
REAL(linkat);
int linkat(int fromfd, const char *from, int tofd, const char *to, int flags) {
    if (counted_at(tofd, to)) hit(K_LINK);
    return LOAD(linkat)(fromfd, from, tofd, to, flags);
}
REAL(symlink);
int symlink(const char *target, const char *path) {
    if (counted_at(AT_FDCWD, path)) hit(K_LINK);
    return LOAD(symlink)(target, path);
}
REAL(utimensat);
int utimensat(int dirfd, const char *path, const struct timespec times[2], int flags) {
    const char *volatile name = path; /* NULL (futimens) despite the prototype's nonnull */
    if (name ? counted_at(dirfd, name) : counted_fd(dirfd)) hit(K_OTHER);
    return LOAD(utimensat)(dirfd, path, times, flags);
}
REAL(readlink);
ssize_t readlink(const char *path, char *buf, size_t size) {
    if (counted_at(AT_FDCWD, path)) hit(K_OTHER);
    return LOAD(readlink)(path, buf, size);
}

REAL(readlinkat);
ssize_t readlinkat(int dirfd, const char *path, char *buf, size_t size) {
    if (counted_at(dirfd, path)) hit(K_OTHER);
    return LOAD(readlinkat)(dirfd, path, buf, size);
}
REAL(symlinkat);
int symlinkat(const char *target, int dirfd, const char *path) {
    if (counted_at(dirfd, path)) hit(K_LINK);
    return LOAD(symlinkat)(target, dirfd, path);
}
/* Attribute changes (a setattr on the metadata server): "other". */
REAL(chmod);
int chmod(const char *path, mode_t mode) {
    if (counted_at(AT_FDCWD, path)) hit(K_OTHER);
    return LOAD(chmod)(path, mode);
}
REAL(fchmodat);
int fchmodat(int dirfd, const char *path, mode_t mode, int flags) {
    if (counted_at(dirfd, path)) hit(K_OTHER);
    return LOAD(fchmodat)(dirfd, path, mode, flags);
}
REAL(chown);
int chown(const char *path, uid_t owner, gid_t group) {
    if (counted_at(AT_FDCWD, path)) hit(K_OTHER);
    return LOAD(chown)(path, owner, group);
}
REAL(lchown);
int lchown(const char *path, uid_t owner, gid_t group) {
    if (counted_at(AT_FDCWD, path)) hit(K_OTHER);
    return LOAD(lchown)(path, owner, group);
}
REAL(fchownat);
int fchownat(int dirfd, const char *path, uid_t owner, gid_t group, int flags) {
    if (counted_at(dirfd, path)) hit(K_OTHER);
    return LOAD(fchownat)(dirfd, path, owner, group, flags);
}
REAL(truncate);
int truncate(const char *path, off_t length) {
    if (counted_at(AT_FDCWD, path)) hit(K_OTHER);
    return LOAD(truncate)(path, length);
}
REAL(truncate64);
int truncate64(const char *path, off64_t length) {
    if (counted_at(AT_FDCWD, path)) hit(K_OTHER);
    return LOAD(truncate64)(path, length);
}
REAL(utime);
int utime(const char *path, const struct utimbuf *times) {
    if (counted_at(AT_FDCWD, path)) hit(K_OTHER);
    return LOAD(utime)(path, times);
}
REAL(utimes);
int utimes(const char *path, const struct timeval times[2]) {
    if (counted_at(AT_FDCWD, path)) hit(K_OTHER);
    return LOAD(utimes)(path, times);
}
/* A FIFO or device node is a create. */
REAL(mknod);
int mknod(const char *path, mode_t mode, dev_t dev) {
    if (counted_at(AT_FDCWD, path)) hit(K_CREATE);
    return LOAD(mknod)(path, mode, dev);
}
REAL(mknodat);
int mknodat(int dirfd, const char *path, mode_t mode, dev_t dev) {
    if (counted_at(dirfd, path)) hit(K_CREATE);
    return LOAD(mknodat)(dirfd, path, mode, dev);
}
REAL(mkfifo);
int mkfifo(const char *path, mode_t mode) {
    if (counted_at(AT_FDCWD, path)) hit(K_CREATE);
    return LOAD(mkfifo)(path, mode);
}
REAL(mkfifoat);
int mkfifoat(int dirfd, const char *path, mode_t mode) {
    if (counted_at(dirfd, path)) hit(K_CREATE);
    return LOAD(mkfifoat)(dirfd, path, mode);
}

/* ------------------------------------------------------------ listings */

REAL(opendir);
DIR *opendir(const char *path) {
    if (counted_at(AT_FDCWD, path)) hit(K_READDIR);
    return LOAD(opendir)(path);
}
REAL(fdopendir);
DIR *fdopendir(int fd) {
    if (counted_fd(fd)) hit(K_READDIR);
    return LOAD(fdopendir)(fd);
}
/* A program reading a folder with getdents64 itself (glibc's readdir calls
 * its own copy, unseen): one per call, each a batch of entries. */
REAL(getdents64);
ssize_t getdents64(int fd, void *buf, size_t size) {
    if (counted_fd(fd)) hit(K_READDIR);
    return LOAD(getdents64)(fd, buf, size);
}
