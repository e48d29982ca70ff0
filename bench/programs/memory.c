/* Workload c: a 1 MiB static array read through gdb.
 * The array lives in .bss so the ELF stays small (workload d fetches ELFs over vFile)
 * and is filled at run time with a pattern that has no byte runs, so a stub's
 * run-length encoding cannot shrink the reply. bench_gdb.py recomputes the pattern
 * to check the bytes gdb dumped: byte i = (i * 131) ^ (i >> 8), truncated to 8 bits. */
#define BUFFER_SIZE (1 << 20)

unsigned char buffer[BUFFER_SIZE];

void ready(void)
{
}

int main(void)
{
    for (unsigned long i = 0; i < BUFFER_SIZE; i++)
        buffer[i] = (unsigned char)((i * 131) ^ (i >> 8));
    ready();
    return 0;
}
