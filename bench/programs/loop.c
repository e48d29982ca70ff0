/* Workloads f and g: a long loop (argv[1] iterations, default 50M) run with no
 * watchpoint, then with 1 or 4 armed write watchpoints on never_page[0..3], which the
 * loop never writes. never_page fills a page of its own, so the figure is the cost of an
 * armed slot, not of sharing a page with the loop's stores (bench_watch_engine.py
 * measures that case on the bare CPU). */
#include <stdlib.h>

long total;
long never_page[512] __attribute__((aligned(4096)));

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 0) : 50000000;
    for (long i = 0; i < n; i++)
        total += i;
    return 0;
}
