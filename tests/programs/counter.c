/* Increments a global counter N times (argv[1], default 10) and prints the final value.
 * The watchpoint tests watch `counter`. */
#include <stdio.h>
#include <stdlib.h>

int counter;

void bump(void)
{
    counter++;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 0) : 10;
    for (long i = 0; i < n; i++)
        bump();
    printf("counter=%d\n", counter);
    return 0;
}
