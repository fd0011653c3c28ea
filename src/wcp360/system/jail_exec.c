/*
 * wcp360-jail-exec: the last step inside a tenant's jail before its command runs.
 *
 * bubblewrap has made the namespaces and mounts, dropped every capability, set no_new_privs and
 * loaded the runtime class's seccomp filter; it then runs this program, which adds what bubblewrap
 * does not do and execs the command:
 *   - resource limits (-l RESOURCE:SOFT:HARD),
 *   - Landlock, at the best ABI the kernel has: the filesystem beneath -r paths readable and
 *     executable, beneath -w paths writable too, beneath -d paths (devices) readable and writable;
 *     everything else of the jail's filesystem refused even where its mode bits would allow;
 *     TCP bind refused (tenants listen on Unix sockets), TCP connect refused unless -n, and
 *     with -n only to the -p ports when any is given;
 *     abstract Unix sockets and signals scoped to the jail (ABI 6),
 *   - every descriptor above stderr closed.
 *
 * Why C, and why hand-written: Landlock must be applied after bubblewrap's mounts (a Landlock
 * domain may not change mounts) and before the command, so it runs inside the jail between the
 * two; bubblewrap 0.8 has no Landlock option, util-linux's setpriv gains one only in 2.40 (Debian
 * 12 has 2.38), and an interpreter here would cost ~15 ms per start against bubblewrap's ~5 ms
 * (issue 14's budget is 1.5x bubblewrap). The program is three system calls and a loop.
 *
 * A refusal by the kernel of a Landlock step is fatal unless -o (optional) says the host may lack
 * Landlock: the agent passes -o only where doctor already reports the kernel cannot.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#define SYS_landlock_add_rule 445
#define SYS_landlock_restrict_self 446
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

/* From linux/landlock.h; spelled out because Debian 12's headers stop at ABI 3. */
#define LL_CREATE_RULESET_VERSION (1U << 0)
#define LL_RULE_PATH_BENEATH 1
#define LL_RULE_NET_PORT 2
#define FS_EXECUTE (1ULL << 0)
#define FS_WRITE_FILE (1ULL << 1)
#define FS_READ_FILE (1ULL << 2)
#define FS_READ_DIR (1ULL << 3)
#define FS_REMOVE_DIR (1ULL << 4)
#define FS_REMOVE_FILE (1ULL << 5)
#define FS_MAKE_CHAR (1ULL << 6)
#define FS_MAKE_DIR (1ULL << 7)
#define FS_MAKE_REG (1ULL << 8)
#define FS_MAKE_SOCK (1ULL << 9)
#define FS_MAKE_FIFO (1ULL << 10)
#define FS_MAKE_BLOCK (1ULL << 11)
#define FS_MAKE_SYM (1ULL << 12)
#define FS_REFER (1ULL << 13)    /* ABI 2 */
#define FS_TRUNCATE (1ULL << 14) /* ABI 3 */
#define FS_IOCTL_DEV (1ULL << 15) /* ABI 5 */
#define NET_BIND_TCP (1ULL << 0)    /* ABI 4 */
#define NET_CONNECT_TCP (1ULL << 1) /* ABI 4 */
#define SCOPE_ABSTRACT_UNIX (1ULL << 0) /* ABI 6 */
#define SCOPE_SIGNAL (1ULL << 1)        /* ABI 6 */

struct ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
    uint64_t scoped;
};

struct path_beneath {
    uint64_t allowed_access;
    int32_t parent_fd;
} __attribute__((packed));

struct net_port {
    uint64_t allowed_access;
    uint64_t port;
} __attribute__((packed));

#define MAX_RULES 64
#define MAX_PORTS 64

static const uint64_t READ_RIGHTS = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR;
static const uint64_t WRITE_RIGHTS = FS_WRITE_FILE | FS_REMOVE_DIR | FS_REMOVE_FILE | FS_MAKE_DIR |
                                     FS_MAKE_REG | FS_MAKE_SOCK | FS_MAKE_FIFO | FS_MAKE_SYM |
                                     FS_REFER | FS_TRUNCATE;
static const uint64_t DIRECTORY_ONLY = FS_READ_DIR | FS_REMOVE_DIR | FS_REMOVE_FILE | FS_MAKE_CHAR |
                                       FS_MAKE_DIR | FS_MAKE_REG | FS_MAKE_SOCK | FS_MAKE_FIFO |
                                       FS_MAKE_BLOCK | FS_MAKE_SYM | FS_REFER;

static void die(const char *what, const char *detail) {
    fprintf(stderr, "wcp360-jail-exec: %s%s%s: %s\n", what, detail ? " " : "", detail ? detail : "",
            strerror(errno));
    exit(126);
}

static void usage(void) {
    fputs("usage: wcp360-jail-exec [-o] [-n [-p PORT]...] [-r DIR]... [-w DIR]... [-d DIR]... "
          "[-l RESOURCE:SOFT:HARD]... -- COMMAND [ARG]...\n",
          stderr);
    exit(125);
}

static int resource_named(const char *name) {
    static const struct { const char *name; int resource; } known[] = {
        {"nofile", RLIMIT_NOFILE}, {"nproc", RLIMIT_NPROC}, {"core", RLIMIT_CORE},
        {"fsize", RLIMIT_FSIZE},   {"as", RLIMIT_AS},       {"cpu", RLIMIT_CPU},
        {"stack", RLIMIT_STACK},   {"memlock", RLIMIT_MEMLOCK},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(known[i].name, name) == 0) return known[i].resource;
    return -1;
}

static void set_limit(char *spec) {
    char *soft = strchr(spec, ':');
    char *hard = soft ? strchr(soft + 1, ':') : NULL;
    if (!soft || !hard) usage();
    *soft++ = '\0';
    *hard++ = '\0';
    int resource = resource_named(spec);
    if (resource < 0) usage();
    struct rlimit limit = {strtoull(soft, NULL, 10), strtoull(hard, NULL, 10)};
    if (setrlimit(resource, &limit) != 0) die("setrlimit", spec);
}

struct rule { const char *path; uint64_t rights; };

static void add_rule(int ruleset, const struct rule *rule, uint64_t handled) {
    int fd = open(rule->path, O_PATH | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return; /* a path this jail does not have grants nothing */
        die("open", rule->path);
    }
    struct stat st;
    if (fstat(fd, &st) != 0) die("stat", rule->path);
    uint64_t rights = rule->rights & handled;
    if (!S_ISDIR(st.st_mode)) rights &= ~DIRECTORY_ONLY;
    struct path_beneath beneath = {rights, fd};
    if (syscall(SYS_landlock_add_rule, ruleset, LL_RULE_PATH_BENEATH, &beneath, 0) != 0)
        die("landlock_add_rule", rule->path);
    close(fd);
}

static int landlock(const struct rule *rules, int count, int tcp_connect, const long *ports, int port_count,
                    int optional) {
    long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LL_CREATE_RULESET_VERSION);
    if (abi < 1) {
        if (optional) return 0;
        die("landlock", "(the kernel has none; doctor reports WCP-KRN-001)");
    }
    struct ruleset_attr attr = {0, 0, 0};
    attr.handled_access_fs = (FS_MAKE_SYM << 1) - 1; /* ABI 1: bits 0-12 */
    if (abi >= 2) attr.handled_access_fs |= FS_REFER;
    if (abi >= 3) attr.handled_access_fs |= FS_TRUNCATE;
    if (abi >= 5) attr.handled_access_fs |= FS_IOCTL_DEV;
    /* Connect is handled (refused but for the rules below) unless the jail has the network and
     * no port list narrows it. */
    if (abi >= 4) attr.handled_access_net = NET_BIND_TCP | (tcp_connect && port_count == 0 ? 0 : NET_CONNECT_TCP);
    if (abi >= 6) attr.scoped = SCOPE_ABSTRACT_UNIX | SCOPE_SIGNAL;
    size_t size = abi >= 6 ? sizeof attr : abi >= 4 ? 2 * sizeof(uint64_t) : sizeof(uint64_t);
    int ruleset = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0);
    if (ruleset < 0) die("landlock_create_ruleset", NULL);
    for (int i = 0; i < count; i++) add_rule(ruleset, &rules[i], attr.handled_access_fs);
    for (int i = 0; abi >= 4 && tcp_connect && i < port_count; i++) {
        struct net_port rule = {NET_CONNECT_TCP, (uint64_t)ports[i]};
        if (syscall(SYS_landlock_add_rule, ruleset, LL_RULE_NET_PORT, &rule, 0) != 0) die("landlock_add_rule", "port");
    }
    if (syscall(SYS_landlock_restrict_self, ruleset, 0) != 0) die("landlock_restrict_self", NULL);
    close(ruleset);
    return (int)abi;
}

int main(int argc, char **argv) {
    struct rule rules[MAX_RULES];
    long ports[MAX_PORTS];
    int count = 0, port_count = 0, tcp_connect = 0, optional = 0, option;
    while ((option = getopt(argc, argv, "+onp:r:w:d:l:")) != -1) {
        if ((option == 'r' || option == 'w' || option == 'd') && count == MAX_RULES) usage();
        switch (option) {
        case 'o': optional = 1; break;
        case 'n': tcp_connect = 1; break;
        case 'p':
            if (port_count == MAX_PORTS) usage();
            ports[port_count] = strtol(optarg, NULL, 10);
            if (ports[port_count] < 1 || ports[port_count] > 65535) usage();
            port_count++;
            break;
        case 'r': rules[count++] = (struct rule){optarg, READ_RIGHTS}; break;
        case 'w': rules[count++] = (struct rule){optarg, READ_RIGHTS | WRITE_RIGHTS}; break;
        case 'd': rules[count++] = (struct rule){optarg, FS_READ_FILE | FS_WRITE_FILE | FS_READ_DIR | FS_IOCTL_DEV}; break;
        case 'l': set_limit(optarg); break;
        default: usage();
        }
    }
    if (optind >= argc) usage();
    /* bubblewrap set it already; said again so this program is safe wherever it runs. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die("no_new_privs", NULL);
    landlock(rules, count, tcp_connect, ports, port_count, optional);
    if (syscall(SYS_close_range, 3U, ~0U, 0) != 0 && errno != ENOSYS) die("close_range", NULL);
    execvp(argv[optind], &argv[optind]);
    die("exec", argv[optind]);
    return 127;
}
