/* The stepping oracle's program: main is pure computation for well over 1000 instructions (loops,
 * arithmetic, calls to its own functions, a switch with a jump table, pushes and pops, a hand-written
 * memcpy, SSE doubles) and only then calls printf. Stepping it one instruction at a time under gdbserver
 * on the real CPU and under our stub must visit the same pcs with the same registers. */
#include <stdio.h>

static unsigned char source_bytes[48];
static unsigned char copied_bytes[48];

/* Pushes and pops outside any C frame: gcc keeps -O0 locals in the red zone, which a push in inline
 * asm would overwrite. Returns (a ^ b) rotated left by the low bits of b, plus (a & 0xff).
 * (No pushf here: under single-step the real CPU pushes TF, see oracle_trapflag.c.) */
unsigned long stack_shuffle(unsigned long a, unsigned long b);
__asm__(
    ".text\n"
    ".globl stack_shuffle\n"
    ".type stack_shuffle, @function\n"
    "stack_shuffle:\n"
    "    push %rbx\n"
    "    push %rdi\n"
    "    push %rsi\n"
    "    pop %rcx\n"             /* rcx = b */
    "    pop %rax\n"             /* rax = a */
    "    xor %rcx, %rax\n"
    "    rol %cl, %rax\n"
    "    movzbl %dil, %ebx\n"
    "    add %rbx, %rax\n"
    "    pop %rbx\n"
    "    ret\n"
    ".size stack_shuffle, .-stack_shuffle\n");

/* glibc's start-up leaves the scratch registers, and the stack below main's frame, holding whatever its
 * CPU-specific string functions (chosen from cpuid) left there, and the emulated CPU is a different
 * model: start main's stretch from known values, so that the register checkpoints (and the arguments
 * gdb shows from a callee's not yet written frame) compare what main computes. The rep stosq also
 * checks that a single step of a rep instruction is one iteration, as on the real CPU. */
void clear_scratch_registers(void);
__asm__(
    ".text\n"
    ".globl clear_scratch_registers\n"
    ".type clear_scratch_registers, @function\n"
    "clear_scratch_registers:\n"
    "    xor %eax, %eax\n"
    "    lea -512(%rsp), %rdi\n"
    "    mov $64, %ecx\n"
    "    rep stosq\n"
    "    xor %edx, %edx\n"
    "    xor %esi, %esi\n"
    "    xor %edi, %edi\n"
    "    xor %r8d, %r8d\n"
    "    xor %r9d, %r9d\n"
    "    xor %r10d, %r10d\n"
    "    xor %r11d, %r11d\n"
    "    pxor %xmm0, %xmm0\n"
    "    pxor %xmm1, %xmm1\n"
    "    pxor %xmm2, %xmm2\n"
    "    ret\n"
    ".size clear_scratch_registers, .-clear_scratch_registers\n");

static void copy_bytes(unsigned char *dst, const unsigned char *src, unsigned long n)
{
    while (n--)
        *dst++ = *src++;
}

static unsigned long mix(unsigned long x, unsigned long y)
{
    x ^= y << 7;
    x *= 0x9E3779B97F4A7C15UL;
    return x ^ (x >> 29);
}

static int classify(int v)
{
    switch (v % 6) {
    case 0: return v * 3;
    case 1: return v - 11;
    case 2: return v << 2;
    case 3: return ~v;
    case 4: return v / 3;
    default: return -v;
    }
}

static double smooth(double previous, int sample)
{
    double truncated = (double)(long)previous;
    return previous * 0.75 + sample / 4.0 - truncated * 0.125;
}

int main(void)
{
    unsigned long acc = 0x0123456789abcdefUL;
    double smoothed = 1.0;
    long sum = 0;

    clear_scratch_registers();
    for (int i = 0; i < (int)sizeof source_bytes; i++)
        source_bytes[i] = (unsigned char)(i * 37 + 5);
    for (int i = 0; i < 24; i++) {
        acc = mix(acc, (unsigned long)i);
        sum += classify(i + (int)(acc & 15));
        smoothed = smooth(smoothed, i);
        acc = stack_shuffle(acc, (unsigned long)sum);
    }
    copy_bytes(copied_bytes, source_bytes, sizeof source_bytes);

    unsigned checksum = 0;
    for (int i = 0; i < (int)sizeof copied_bytes; i++)
        checksum = checksum * 31 + copied_bytes[i];
    printf("acc=%lx sum=%ld smoothed=%.6f checksum=%08x\n", acc, sum, smoothed, checksum);
    return 0;
}
