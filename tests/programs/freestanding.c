/* build-flags: -static -nostdlib -ffreestanding -fno-stack-protector -fno-pie -no-pie -g -O0 */
/* No libc: _start writes a line with the raw write syscall and exits with status 3. */
static long raw_syscall3(long nr, long a, long b, long c)
{
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return ret;
}

static const char message[] = "freestanding hello\n";

void _start(void)
{
    raw_syscall3(1, 1, (long)message, sizeof message - 1);   /* write(1, ...) */
    raw_syscall3(60, 3, 0, 0);                                /* exit(3) */
    for (;;)
        ;
}
