/* Workload e: `watch counter` + N continues. Each loop round writes `counter` exactly
 * once (one watchpoint hit) and does a little other work in between, as the issue asks. */
#include <stdlib.h>

int counter;
long other_work;

void bump(void)
{
    counter++;
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? strtol(argv[1], NULL, 0) : 10000000;
    for (long i = 0; i < rounds; i++) {
        other_work += i;
        bump();
    }
    return 0;
}
