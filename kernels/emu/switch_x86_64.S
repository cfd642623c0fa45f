/* Fiber context switch for the emulator (x86-64 System V).
 *
 *   void memwall_emu_switch(void** save_sp, void* next_sp)
 *
 * Saves the callee-saved registers, MXCSR and the x87 control word on the
 * current stack, stores the stack pointer in *save_sp, loads next_sp, and
 * restores the same set from there. A new fiber's stack is prepared by
 * memwall_emu::prepare_stack in runtime.cpp to look like one saved here,
 * with the fiber's entry function as the return address.
 */
    .text
    .globl memwall_emu_switch
    .type memwall_emu_switch, @function
memwall_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size memwall_emu_switch, .-memwall_emu_switch
    .section .note.GNU-stack,"",@progbits
