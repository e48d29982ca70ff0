/* Alternating writes and reads of `shared`, for rwatch/awatch: every write changes the value,
 * so a read watchpoint emulated with an access slot (x86) can tell the writes apart. */
#include <stdio.h>

volatile int shared;
volatile int sink;

int main(void)
{
    shared = 1;        /* write 0 -> 1 */
    sink = shared;     /* read, value 1 */
    shared = 2;        /* write 1 -> 2 */
    sink = shared;     /* read, value 2 */
    shared = 3;        /* write 2 -> 3 */
    printf("sink=%d shared=%d\n", sink, shared);
    return 0;
}
