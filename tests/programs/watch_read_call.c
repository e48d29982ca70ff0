/* rwatch on a true read-only slot (--debug-arch virt): `shared` is read by a function called in a
 * loop, so each read sits in a block the CPU has run before (where a reused translation once let
 * the read slip past the watch). */
#include <stdio.h>

volatile long shared = 5;
long sink;

__attribute__((noinline)) long get(void)
{
    return shared;
}

int main(void)
{
    long sum = 0;
    for (int i = 0; i < 3; i++)
        sum += get();
    sink = sum;
    printf("sink=%ld\n", sink);
    return 0;
}
