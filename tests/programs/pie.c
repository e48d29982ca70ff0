/* build-flags: -static-pie -fPIE -g -O0 */
/* A static-pie: position independent, no PT_INTERP; relocates itself at startup. Run natively with
 * `setarch -R` (ASLR off) it prints the same addresses as on the emulated CPU. */
#include <stdio.h>
#include <unistd.h>

static int table[4] = { 1, 2, 3, 4 };
int *table_ptr = table;                       /* needs a R_X86_64_RELATIVE relocation */

int main(void)
{
    int sum = 0;
    for (int i = 0; i < 4; i++)
        sum += table_ptr[i];
    printf("pie sum %d, main at %p, break at %p\n", sum, (void *)main, sbrk(0));
    return 0;
}
