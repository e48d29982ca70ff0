/* Writes through a NULL pointer: SIGSEGV at the store. */
#include <stdio.h>

int main(void)
{
    volatile int *nowhere = 0;
    fprintf(stderr, "about to crash\n");   /* stderr is unbuffered: seen before the crash */
    *nowhere = 1;
    return 0;
}
