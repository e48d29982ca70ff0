/* Writes to regions that need more than one debug-register slot, to bytes next to them,
 * and to four separate longs, in this order. Every write changes the value. */
#include <stdio.h>

struct pair {
    long first;
    long second;
};

struct pair pair __attribute__((aligned(16)));     /* 16 bytes: two 8-byte slots */
unsigned char bytes[8] __attribute__((aligned(8))); /* bytes[1..3]: slots of 1 and 2 bytes */
long quad[4];                                       /* four single-slot watchpoints */
long extra;                                         /* the fifth */

int main(void)
{
    pair.first = 1;
    pair.second = 2;
    bytes[0] = 10;      /* just before the 3-byte region */
    bytes[1] = 11;
    bytes[3] = 13;
    bytes[4] = 14;      /* just after it */
    for (int i = 0; i < 4; i++)
        quad[i] = 100 + i;
    extra = 5;
    printf("pair=%ld,%ld bytes=%d,%d,%d quad=%ld extra=%ld\n",
           pair.first, pair.second, bytes[1], bytes[3], bytes[4], quad[3], extra);
    return 0;
}
