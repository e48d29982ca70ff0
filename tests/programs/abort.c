/* Calls abort(): glibc raises SIGABRT with tgkill. */
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    fprintf(stderr, "aborting\n");
    abort();
}
