/* Code the program maps during its run: an `fstp tbyte ptr [rdi]; ret` copied into a fresh RW page,
 * which is then made executable and called to store 1.0 into `target` (watch target). */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

long double target;

int main(void)
{
    static const unsigned char code[] = {0xdb, 0x3f, 0xc3};      /* fstp tbyte ptr [rdi]; ret */
    void *page = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memcpy(page, code, sizeof code);
    mprotect(page, 4096, PROT_READ | PROT_EXEC);
    __asm__ volatile("fld1\n\tcall *%0" :: "r"(page), "D"(&target) : "memory", "st");
    printf("target=%.1Lf\n", target);
    return 0;
}
