/* build-flags: -static -g -O0 -mcx16 */
/* Stores that Unicorn makes inside C helpers, not in translated code (gdbstub/target/helper_stores.py):
 * a page-protected watch must still see each one exactly once. N = argv[1] (default 3) rounds each.
 *   ld     a long double: x87 80-bit load, add, fstpt               (watch ld)
 *   pair   16 bytes updated with lock cmpxchg16b                    (watch pair)
 *   state  an fxsave image of the FPU/SSE state                     (watch state.image[20]: xmm0)
 *   local  a long double on accumulate()'s stack: fstpt through rbp  (watch local)
 * `neighbour` shares their page and is written in every round (no stop). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

long double ld;
unsigned __int128 pair __attribute__((aligned(16)));
struct { unsigned long image[64]; } state __attribute__((aligned(16)));
int neighbour;

static void save_state(double x)
{
    __asm__ volatile("movq %1, %%xmm0\n\tfxsave64 %0" : "=m"(state) : "r"(x) : "xmm0");
}

static long double accumulate(int n)
{
    long double local = 0;
    for (int i = 0; i < n; i++)
        local += 0.25L;
    return local;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 3;
    for (int i = 0; i < n; i++) {
        ld = ld + 1.5L;
        neighbour++;
    }
    for (int i = 0; i < n; i++) {
        unsigned __int128 old = pair;
        __sync_val_compare_and_swap(&pair, old, old + ((unsigned __int128)1 << 64) + 1);
        neighbour++;
    }
    for (int i = 0; i < n; i++) {
        save_state(i + 0.5);
        neighbour++;
    }
    long double sum = accumulate(n);
    printf("ld=%.1Lf pair=%llx:%llx xmm0=%#lx neighbour=%d sum=%.2Lf\n", ld, (unsigned long long)(pair >> 64),
           (unsigned long long)pair, state.image[20], neighbour, sum);
    return 0;
}
