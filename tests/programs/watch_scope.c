/* A local variable that lives only while sum_to runs, for gdb's watchpoint scope handling. */
#include <stdio.h>

int total;

int sum_to(int n)
{
    int local = 0;
    for (int i = 1; i <= n; i++)
        local += i;
    return local;
}

int main(void)
{
    total = sum_to(3);
    printf("total=%d\n", total);
    return 0;
}
