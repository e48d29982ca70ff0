/* Increments the global `counter` M times (argv[2], default 5) and prints the final value.
 * argv[1] picks the store: "plain" is C's `counter++` (load, add, store), "lock" is one
 * `lock addq` read-modify-write per increment. The watchpoint tests watch `counter`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

long counter;

void bump_plain(void)
{
    counter++;
}

void bump_locked(void)
{
    __asm__ volatile("lock addq $1, %0" : "+m"(counter));
}

int main(int argc, char **argv)
{
    int locked = argc > 1 && strcmp(argv[1], "lock") == 0;
    long m = argc > 2 ? strtol(argv[2], NULL, 0) : 5;
    for (long i = 0; i < m; i++) {
        if (locked)
            bump_locked();
        else
            bump_plain();
    }
    printf("counter=%ld\n", counter);
    return 0;
}
