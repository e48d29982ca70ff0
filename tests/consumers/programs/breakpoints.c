/* build-flags: -static -nostdlib -ffreestanding -fno-stack-protector -fno-pie -no-pie -g -O0 */
/* The child of tools/testing/selftests/breakpoints/breakpoint_test.c, without ptrace:
 * the test plays the tracer, programming u_debugreg before each access. Order:
 * 3 enable combos x 4 instruction breakpoints (dummy_func0..3), then lengths 1,2,4,8 x
 * 3 combos x 4 variables of writes, then the same of reads, then icebp and int3.
 * `done` counts finished accesses, so the tracer sees a missing or an extra trap. */

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;

unsigned long dummy_var[4] __attribute__((aligned(8)));
volatile long done;
volatile u64 sink;

__attribute__((noinline)) void dummy_func0(void) { __asm__ volatile("nop"); }
__attribute__((noinline)) void dummy_func1(void) { __asm__ volatile("nop"); }
__attribute__((noinline)) void dummy_func2(void) { __asm__ volatile("nop"); }
__attribute__((noinline)) void dummy_func3(void) { __asm__ volatile("nop"); }

static void (*const dummy_funcs[4])(void) = {dummy_func0, dummy_func1, dummy_func2, dummy_func3};

static void write_var(int i, int len)
{
    void *p = &dummy_var[i];
    switch (len) {
    case 1: *(volatile u8 *)p = 1; break;
    case 2: *(volatile u16 *)p = 1; break;
    case 4: *(volatile u32 *)p = 1; break;
    case 8: *(volatile u64 *)p = 1; break;
    }
}

static void read_var(int i, int len)
{
    void *p = &dummy_var[i];
    switch (len) {
    case 1: sink = *(volatile u8 *)p; break;
    case 2: sink = *(volatile u16 *)p; break;
    case 4: sink = *(volatile u32 *)p; break;
    case 8: sink = *(volatile u64 *)p; break;
    }
}

void _start(void)
{
    int write, len, local, global, i;

    for (local = 0; local < 2; local++)
        for (global = 0; global < 2; global++) {
            if (!local && !global)
                continue;
            for (i = 0; i < 4; i++) {
                dummy_funcs[i]();
                done++;
            }
        }

    /* All the writes first, then all the reads. */
    for (write = 1; write >= 0; write--)
        for (len = 1; len <= 8; len <<= 1)
            for (local = 0; local < 2; local++)
                for (global = 0; global < 2; global++) {
                    if (!local && !global)
                        continue;
                    for (i = 0; i < 4; i++) {
                        if (write)
                            write_var(i, len);
                        else
                            read_var(i, len);
                        done++;
                    }
                }

    __asm__ volatile(".byte 0xf1");   /* icebp */
    done++;
    __asm__ volatile("int3");
    done++;

    __asm__ volatile("syscall" : : "a"(60), "D"(0) : "rcx", "r11", "memory");   /* exit(0) */
    for (;;)
        ;
}
