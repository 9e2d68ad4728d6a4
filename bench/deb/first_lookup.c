/* One getpwnam() in a fresh process, timed from inside: the first lookup
 * pays for loading the NSS module (dlopen, relocations, its dependencies)
 * and for the module's own first-call setup. Prints nanoseconds.
 *   first_lookup NAME    (exit 0 found, 2 not found) */
#include <pwd.h>
#include <stdio.h>
#include <time.h>

int main(int argc, char **argv) {
    struct timespec start, end;
    if (argc != 2)
        return 64;
    clock_gettime(CLOCK_MONOTONIC, &start);
    struct passwd *pw = getpwnam(argv[1]);
    clock_gettime(CLOCK_MONOTONIC, &end);
    printf("%ld\n", (end.tv_sec - start.tv_sec) * 1000000000L + (end.tv_nsec - start.tv_nsec));
    return pw ? 0 : 2;
}
