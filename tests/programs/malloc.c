/* malloc/free of small (brk) and large (mmap) blocks, realloc growth; prints a checksum. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned long fill_and_sum(unsigned char *p, size_t n, unsigned seed)
{
    unsigned long sum = 0;
    for (size_t i = 0; i < n; i++) {
        p[i] = (unsigned char)(i * 31u + seed);
        sum += p[i];
    }
    return sum;
}

int main(void)
{
    unsigned long checksum = 0;
    void *small[64];
    for (int i = 0; i < 64; i++) {
        small[i] = malloc(16 + i * 24);
        checksum += fill_and_sum(small[i], 16 + i * 24, i);
    }
    for (int i = 0; i < 64; i += 2)
        free(small[i]);

    size_t big = 256u << 10;                   /* above the 128 KiB mmap threshold: mmap + munmap */
    unsigned char *large = malloc(big);
    checksum += fill_and_sum(large, big, 7);
    large = realloc(large, big * 2);          /* mremap, or malloc + copy + free */
    checksum += large[big - 1] + large[12345];
    memset(large + big, 0xab, big);
    checksum += large[2 * big - 1];
    free(large);

    char *grown = NULL;
    for (int i = 1; i <= 200; i++) {
        grown = realloc(grown, i * 100);
        grown[i * 100 - 1] = (char)i;
    }
    checksum += (unsigned char)grown[199 * 100 - 1];
    free(grown);
    for (int i = 1; i < 64; i += 2)
        free(small[i]);
    printf("checksum %lu\n", checksum);
    return 0;
}
