/* Prints a few lines through stdio and exits 0. */
#include <stdio.h>

int main(void)
{
    printf("hello, world\n");
    for (int i = 1; i <= 3; i++)
        printf("line %d of %d\n", i, 3);
    fputs("to stderr\n", stderr);
    return 0;
}
