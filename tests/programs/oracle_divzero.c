/* Divides by zero: the CPU raises #DE at the idiv, which Linux delivers as SIGFPE (FPE_INTDIV). */
#include <stdio.h>

volatile int numerator = 7;
volatile int denominator;

int main(void)
{
    printf("dividing %d by %d\n", numerator, denominator);
    fflush(stdout);
    int quotient = numerator / denominator;
    printf("quotient=%d\n", quotient);
    return 0;
}
