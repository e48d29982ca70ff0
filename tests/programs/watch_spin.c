/* Spins without touching `watched` until the debugger sets `release`, then writes `watched`. */
#include <stdio.h>

volatile unsigned long spins;
volatile int release;
long watched;

int main(void)
{
    while (!release)
        spins++;
    watched = 42;
    printf("watched=%ld\n", watched);
    return 0;
}
