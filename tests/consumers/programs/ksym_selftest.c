/* build-flags: -static -nostdlib -ffreestanding -fno-stack-protector -fno-pie -no-pie -g -O2 */
/* The ksym tracer's selftest (kernel/trace/trace_selftest.c) as a program: with
 * `ksym_selftest_dummy:rw-` in the filter, `if (dummy == 0) dummy++;` is two
 * instructions touching it (a load, then a store: two records), and one
 * read-modify-write `add` on `rmw_target` is one instruction (one record).
 * -O2 so the compiler emits one load and one store, as the kernel's build does. */

int ksym_selftest_dummy;
int rmw_target;

__attribute__((noinline)) void check_and_bump(void)
{
    if (ksym_selftest_dummy == 0)
        ksym_selftest_dummy++;
}

__attribute__((noinline)) void add_one(void)
{
    __asm__ volatile("addl $1, %0" : "+m"(rmw_target));
}

void _start(void)
{
    check_and_bump();
    add_one();
    __asm__ volatile("syscall" : : "a"(60), "D"(0) : "rcx", "r11", "memory");   /* exit(0) */
    for (;;)
        ;
}
