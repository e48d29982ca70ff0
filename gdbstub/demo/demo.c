/*
 * demo.c - the program trio-gdbstub serves when you give it none.
 *
 * It counts to a million, moving a point around a small square on the way, and prints what it did.
 * Things to try from gdb:
 *
 *     (gdb) watch counter          stops after every increment (old and new value shown)
 *     (gdb) watch point.y          stops when step() moves the point up or down
 *     (gdb) rwatch squares[3]      stops when sum_squares() reads it
 *     (gdb) print banner
 *
 * Build (see build.sh):  gcc -static -g -O0 -o demo demo.c
 */
#include <stdio.h>

#define ITERATIONS 1000000

struct point {
    int x, y;
};

int counter;                              /* bumped once per loop pass */
struct point point;                       /* walks around a 4x4 square, one step per pass */
int squares[8];                           /* 0, 1, 4, ... 49, filled by fill_squares() */
char banner[] = "trio-gdbstub demo: counting to a million";

/* Move one unit along the edge of the square (0,0)-(3,3), counter-clockwise. */
void step(struct point *p)
{
    if (p->y == 0 && p->x < 3)
        p->x++;
    else if (p->x == 3 && p->y < 3)
        p->y++;
    else if (p->y == 3 && p->x > 0)
        p->x--;
    else
        p->y--;
}

void fill_squares(void)
{
    for (int i = 0; i < 8; i++)
        squares[i] = i * i;
}

int sum_squares(void)
{
    int sum = 0;
    for (int i = 0; i < 8; i++)
        sum += squares[i];
    return sum;
}

int main(void)
{
    puts(banner);
    fill_squares();
    for (long i = 0; i < ITERATIONS; i++) {
        counter++;
        step(&point);
    }
    printf("counter = %d, point = (%d, %d), sum of squares = %d\n",
           counter, point.x, point.y, sum_squares());
    return 0;
}
