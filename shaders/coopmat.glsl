// The matrix unit's types and instructions for the three builds of a matrix-unit kernel
// (CMakeLists.txt): GL_NV_cooperative_matrix by default, GL_KHR_cooperative_matrix with
// COOPMAT_KHR, none with COOPMAT_EMULATED (the kernel then spells the products out as loops).
// MM x NN (C), MM x KK (A), KK x NN (B) are the including kernel's specialization constants;
// tiles are fp16, accumulators fp32, loads and stores row-major from shared memory.
#if defined(COOPMAT_KHR)
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#define MAT_A coopmat<float16_t, gl_ScopeSubgroup, MM, KK, gl_MatrixUseA>
#define MAT_B coopmat<float16_t, gl_ScopeSubgroup, KK, NN, gl_MatrixUseB>
#define MAT_C coopmat<float, gl_ScopeSubgroup, MM, NN, gl_MatrixUseAccumulator>
#define MAT_LOAD(m, arr, offset, stride) coopMatLoad(m, arr, offset, stride, gl_CooperativeMatrixLayoutRowMajor)
#define MAT_STORE(m, arr, offset, stride) coopMatStore(m, arr, offset, stride, gl_CooperativeMatrixLayoutRowMajor)
#define MAT_MULADD(a, b, c) coopMatMulAdd(a, b, c)
#elif !defined(COOPMAT_EMULATED)
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#define MAT_A fcoopmatNV<16, gl_ScopeSubgroup, MM, KK>
#define MAT_B fcoopmatNV<16, gl_ScopeSubgroup, KK, NN>
#define MAT_C fcoopmatNV<32, gl_ScopeSubgroup, MM, NN>
#define MAT_LOAD(m, arr, offset, stride) coopMatLoadNV(m, arr, offset, stride, false)
#define MAT_STORE(m, arr, offset, stride) coopMatStoreNV(m, arr, offset, stride, false)
#define MAT_MULADD(a, b, c) coopMatMulAddNV(a, b, c)
#endif

// Loops over tiles: unrolled for the matrix unit (its tiles live in registers). The emulated
// build holds whole tiles in per-lane arrays; Mesa unrolls any loop that indexes a local array
// by its counter, and the unrolled shaders (thousands of shared-memory FMAs at a 160-wide head)
// took lavapipe's LLVM 100 s to compile: there the loops are marked not to be unrolled
// (0.3 s; the arrays then live in scratch memory, which a test vehicle can afford).
#if defined(COOPMAT_EMULATED)
#define UNROLL [[dont_unroll]]
#else
#define UNROLL [[unroll]]
#endif
