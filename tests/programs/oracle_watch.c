/* The watchpoint oracle's program: phases that each touch their own variable, so one watch per gdb
 * session sees only its phase. N = argv[1] (default 5) sets the loop counts.
 *   counter  written by bump() N times                        (watch)
 *   shared   read, written with an unchanged value, read-modify-written  (rwatch, awatch)
 *   tick()   called N times                                    (hbreak)
 *   wide     a 16-byte struct: each half written, then one byte inside the upper half  (watch: 2 slots)
 *   odd.buf  3 bytes at an odd address: neighbours written (no stop), each byte, a 4-byte store over
 *            pad+buf[0..2]                                    (watch: unaligned, split by the server)
 *   locked   lock add in inline asm, N times                  (watch) */
#include <stdio.h>
#include <stdlib.h>

int counter;
volatile int shared;
struct sixteen { long lo, hi; } __attribute__((aligned(16))) wide;
struct odd_layout { char pad; char buf[3]; char tail[4]; } __attribute__((aligned(8))) odd;
int locked;

void bump(void)
{
    counter++;
}

int tick(int i)
{
    return i * 2 + 1;
}

static int touch_shared(int rounds)
{
    int seen = 0;
    for (int i = 0; i < rounds; i++) {
        seen += shared;              /* read */
        shared = shared;             /* read, then a write that leaves the value alone */
        shared = shared + i;         /* read, then a write that changes it (except at i = 0) */
    }
    return seen;
}

static void write_wide(void)
{
    wide.lo = 0x1111;
    wide.hi = 0x2222;
    wide.lo += wide.hi;
    ((volatile unsigned char *)&wide)[12] = 0x7f;
}

static void write_odd(void)
{
    odd.pad = 'p';                   /* just below buf: no stop */
    odd.tail[0] = 't';               /* just above buf: no stop */
    odd.buf[0] = 'a';
    odd.buf[2] = 'c';
    *(volatile unsigned *)&odd = 0x44434241u;   /* pad and all of buf in one aligned store */
    odd.buf[1] = 'B';
}

static void add_locked(int rounds)
{
    for (int i = 0; i < rounds; i++)
        __asm__ volatile("lock addl $3, %0" : "+m"(locked));
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 5;
    for (int i = 0; i < n; i++)
        bump();
    int seen = touch_shared(n);
    int ticks = 0;
    for (int i = 0; i < n; i++)
        ticks += tick(i);
    write_wide();
    write_odd();
    add_locked(n);
    printf("counter=%d seen=%d shared=%d ticks=%d wide=%lx/%lx odd=%.3s locked=%d\n", counter, seen,
           shared, ticks, wide.lo, wide.hi, odd.buf, locked);
    return 0;
}
