/* pushf under single-step: Linux steps a traced program by setting TF, so on the real CPU a stepped
 * pushfq stores the flags with TF (0x100) set, while a continued one does not. read_flags returns what
 * pushfq stored; main calls it once (to be stepped) and once more (to run through). */
#include <stdio.h>

unsigned long read_flags(void);
__asm__(
    ".text\n"
    ".globl read_flags\n"
    ".type read_flags, @function\n"
    "read_flags:\n"
    "    pushfq\n"
    "    pop %rax\n"
    "    ret\n"
    ".size read_flags, .-read_flags\n");

int main(void)
{
    unsigned long stepped = read_flags();
    unsigned long continued = read_flags();
    printf("stepped TF=%lu continued TF=%lu\n", (stepped >> 8) & 1, (continued >> 8) & 1);
    return 0;
}
