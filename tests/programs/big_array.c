/* A 256 KiB array with a pattern that has no byte runs, filled at run time: gdb reads it as a
 * run of `m` packets. Byte i = (i * 131) ^ (i >> 8), truncated to 8 bits. */
#define SIZE (256 * 1024)

unsigned char buffer[SIZE];

void ready(void)
{
}

int main(void)
{
    for (unsigned long i = 0; i < SIZE; i++)
        buffer[i] = (unsigned char)((i * 131) ^ (i >> 8));
    ready();
    return 0;
}
