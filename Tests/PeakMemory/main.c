// peak-memory PROGRAM [ARG...]: runs PROGRAM with its output discarded and prints "<exit status> <peak KiB> <CPU ms>",
// the program's own peak resident memory and user + system CPU time from wait4.
//
// The tests need this small intermediate because Linux carries a parent's memory high-water mark into a
// child: a child spawned straight from the test process (vfork + exec) reports at least the test process's
// own peak as its ru_maxrss. A child forked from this small program starts from this program's few hundred KiB.
#include <fcntl.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: peak-memory PROGRAM [ARG...]\n");
        return 64;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("peak-memory: fork");
        return 70;
    }
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0) _exit(126);
        execv(argv[1], argv + 1);
        _exit(127);
    }
    int status = 0;
    struct rusage usage;
    if (wait4(pid, &status, 0, &usage) < 0) {
        perror("peak-memory: wait4");
        return 70;
    }
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    long cpu_ms = (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1000L + (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1000L;
    printf("%d %ld %ld\n", code, usage.ru_maxrss, cpu_ms);
    return 0;
}
