/* Workloads a (stepi), b (raw `m` reads) and d (connect with no local file).
 * `work` is a long, side-effect-free loop that gdb single-steps through; it never
 * calls out or makes a syscall, so N stepi stay inside it for any N below ~10M. */
#include <stdlib.h>

long sink;

void work(long rounds)
{
    long acc = 1;
    for (long i = 0; i < rounds; i++)
        acc = acc * 3 + i;
    sink = acc;
}

int main(int argc, char **argv)
{
    work(argc > 1 ? strtol(argv[1], NULL, 0) : 1000000);
    return 0;
}
