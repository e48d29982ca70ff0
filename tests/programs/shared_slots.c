/* Four globals touched a few times each: the ksym tracer, a perf counter and gdb's watchpoints
 * share the debug registers over them (tests/e2e/test_consumers_gdb.py). */
#include <stdio.h>
#include <stdlib.h>

int counter, total, last, spare;

void bump(int i)
{
    counter++;
    total += i;
    last = i;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 4;
    for (int i = 1; i <= n; i++)
        bump(i);
    spare = counter + total;
    printf("counter=%d total=%d last=%d spare=%d\n", counter, total, last, spare);
    return 0;
}
