/* A privileged instruction in user mode: Linux delivers SIGSEGV (a #GP) at the instruction.
 * argv[1] names the instruction; with no argument the program just exits 0. */
#include <string.h>

int main(int argc, char **argv)
{
    const char *which = argc > 1 ? argv[1] : "";
    if (!strcmp(which, "hlt"))
        __asm__ volatile("hlt");
    else if (!strcmp(which, "cli"))
        __asm__ volatile("cli");
    else if (!strcmp(which, "rdmsr"))
        __asm__ volatile("rdmsr" : : "c"(0xc0000080) : "eax", "edx");
    return 0;
}
