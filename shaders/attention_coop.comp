#version 450
// Fused multi-head attention on the matrix unit: O = softmax(Q Kᵀ · scale) V per (batch,
// head), the contract of attention.comp, with the same online (flash-style) softmax so the
// Lq x Lk scores never exist in memory. fp16 operands, fp32 scores and accumulators.
//
// A workgroup takes one head of one image and 4 blocks of MM queries (one block per subgroup,
// BPS blocks per subgroup where subgroups are wide; see matmul_coop.comp). Each block keeps
// its queries as A tiles and its output as DP/NN accumulator tiles in registers and walks the
// keys KB at a time; per key block the workgroup stages K (transposed) and V in shared memory,
// and each block:
//   1. S = Q · Kᵀ on the matrix unit, out to shared memory (MM x KB fp32);
//   2. row by row (lanes): scale, mask, new running max m, correction exp2(m_old - m), the
//      probabilities P = exp2(S - m) as fp16, running sum l;
//   3. rescales its accumulators by the correction (through shared memory: the matrix unit's
//      layout of rows among lanes is the driver's) and adds P · V on the matrix unit.
// At the end O / l goes out. The head dimension D is padded with zeros to DP (a multiple of
// the tile sizes) in the staging; keys past Lk (and later than the query, CAUSAL) are masked.
// COOPMAT_EMULATED spells the three products out as per-lane loops over the same shared
// tiles, with the queries in shared memory (coopmat.glsl, matmul_coop.comp).
#extension GL_EXT_control_flow_attributes : enable
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_KHR_shader_subgroup_basic : require
#include "common.glsl"

#include "coopmat.glsl"

layout(local_size_x_id = 0) in;                 // WG invocations
layout(constant_id = 1) const uint MM = 16;     // matrix-unit tile: rows of A and C (queries)
layout(constant_id = 2) const uint NN = 16;     //                   columns of B and C
layout(constant_id = 3) const uint KK = 16;     //                   inner size
layout(constant_id = 4) const uint DP = 48;     // head dim padded to a multiple of NN and KK
layout(constant_id = 5) const bool CAUSAL = false;
layout(constant_id = 6) const uint BPS = 1;     // query blocks per subgroup
layout(constant_id = 7) const uint LANES = 8;   // COOPMAT_EMULATED: the subgroup size

const uint BQ = 4 * MM;                          // queries per workgroup
const uint KB = 2 * (NN > KK ? NN : KK);         // keys per block
const uint DT = DP / NN;                         // output tiles per block
const uint QT = DP / KK;                         // query (A) tiles per block

IN(0, Q);   // [B, Lq, H * D]
IN(1, K);   // [B, Lk, H * D]
IN(2, V);   // [B, Lk, H * D]
OUT(3, O);  // [B, Lq, H * D]

layout(push_constant) uniform P {
  uint heads, lq, lk, d;
  float scale_log2;  // scale · log2(e): the softmax is evaluated with exp2
} p;

const float kMasked = -3.0e38;  // finite, so that (masked - running max) never forms inf - inf
const float kNoMax = -1.0e30;

// The queries (at the start) and then each key block's K and V share one staging area.
const uint STAGE = (BQ > 2 * KB ? BQ : 2 * KB) * DP;
shared float16_t sKV[STAGE];     // K block [DP][KB] at 0, V block [KB][DP] at KB * DP
shared float sS[4 * MM * KB];    // per query block: scores
shared float16_t sP[4 * MM * KB];  // per query block: probabilities
shared float sT[4 * MM * NN];    // per query block: an output tile on its way through
shared float sM[4 * MM], sL[4 * MM], sCorr[4 * MM];
#if defined(COOPMAT_EMULATED)
shared float16_t sQ[BQ * DP];
#endif

void main() {
  const uint WG = gl_WorkGroupSize.x;
  const uint tid = gl_LocalInvocationIndex;
  const uint bh = gl_WorkGroupID.y, h = bh % p.heads, b = bh / p.heads;
  const uint q0 = gl_WorkGroupID.x * BQ;
  const uint row = p.heads * p.d;  // elements between consecutive tokens
  const uint lane = gl_SubgroupInvocationID;

  // Stage the workgroup's queries [BQ][DP] (zero past Lq and past D).
#if defined(COOPMAT_EMULATED)
#define QSTAGE sQ
#else
#define QSTAGE sKV
#endif
  for (uint e = tid; e < BQ * DP; e += WG) {
    uint qi = q0 + e / DP, dd = e % DP;
    QSTAGE[e] = qi < p.lq && dd < p.d ? float16_t(LOAD(Q, (b * p.lq + qi) * row + h * p.d + dd)) : float16_t(0.0);
  }
  for (uint e = tid; e < 4 * MM; e += WG) {
    sM[e] = kNoMax;
    sL[e] = 0.0;
  }
  barrier();

#if defined(COOPMAT_EMULATED)
  const uint EL = MM * NN / LANES;  // lane l holds elements l, l + LANES, ... of each tile
  float o[BPS][DT][EL];
  UNROLL for (uint s = 0; s < BPS; ++s)
    UNROLL for (uint t = 0; t < DT; ++t)
      UNROLL for (uint q = 0; q < EL; ++q) o[s][t][q] = 0.0;
#else
  MAT_A qa[BPS][QT];
  MAT_C o[BPS][DT];
  UNROLL for (uint s = 0; s < BPS; ++s) {
    const uint blk = gl_SubgroupID + s * gl_NumSubgroups;
    if (blk >= 4) break;
    UNROLL for (uint t = 0; t < QT; ++t) MAT_LOAD(qa[s][t], sKV, blk * MM * DP + t * KK, DP);
    UNROLL for (uint t = 0; t < DT; ++t) o[s][t] = MAT_C(0.0);
  }
  barrier();  // sKV is the K/V staging from here on
#endif

  uint kend = p.lk;
  if (CAUSAL) kend = min(p.lk, q0 + BQ);  // the workgroup's last query sees keys up to q0 + BQ - 1
  for (uint j0 = 0; j0 < kend; j0 += KB) {
    // K transposed [DP][KB] (keys contiguous) and V [KB][DP], zero past Lk and D.
    for (uint e = tid; e < KB * DP; e += WG) {
      uint key = e / DP, dd = e % DP, j = j0 + key;
      bool ok = j < p.lk && dd < p.d;
      uint src = (b * p.lk + j) * row + h * p.d + dd;
      sKV[dd * KB + key] = ok ? float16_t(LOAD(K, src)) : float16_t(0.0);
      sKV[KB * DP + e] = ok ? float16_t(LOAD(V, src)) : float16_t(0.0);
    }
    barrier();
    UNROLL for (uint s = 0; s < BPS; ++s) {
      const uint blk = gl_SubgroupID + s * gl_NumSubgroups;  // uniform in the subgroup
      if (blk >= 4) break;
      // 1. Scores S = Q · Kᵀ [MM][KB].
#if defined(COOPMAT_EMULATED)
      for (uint e = lane; e < MM * KB; e += LANES) {
        uint r = e / KB, c = e % KB;
        float acc = 0.0;
        for (uint dd = 0; dd < DP; ++dd) acc += float(sQ[(blk * MM + r) * DP + dd]) * float(sKV[dd * KB + c]);
        sS[blk * MM * KB + e] = acc;
      }
#else
      UNROLL for (uint jt = 0; jt < KB / NN; ++jt) {
        MAT_C sc = MAT_C(0.0);
        UNROLL for (uint t = 0; t < QT; ++t) {
          MAT_B kb;
          MAT_LOAD(kb, sKV, t * KK * KB + jt * NN, KB);
          sc = MAT_MULADD(qa[s][t], kb, sc);
        }
        MAT_STORE(sc, sS, blk * MM * KB + jt * NN, KB);
      }
#endif
      subgroupMemoryBarrierShared();
      subgroupBarrier();
      // 2. Online softmax, a row per lane.
      for (uint r = lane; r < MM; r += gl_SubgroupSize) {
        const uint qi = q0 + blk * MM + r, ri = blk * MM + r;
        const float mo = sM[ri];
        float mb = mo;
        for (uint c = 0; c < KB; ++c) {
          uint j = j0 + c;
          bool masked = j >= p.lk || (CAUSAL && j > qi);
          float sv = masked ? kMasked : sS[ri * KB + c] * p.scale_log2;
          sS[ri * KB + c] = sv;
          mb = max(mb, sv);
        }
        float sum = 0.0;
        for (uint c = 0; c < KB; ++c) {
          float16_t pv = float16_t(exp2(sS[ri * KB + c] - mb));
          sP[ri * KB + c] = pv;
          sum += float(pv);  // the sum of what is multiplied, as rounded
        }
        const float corr = exp2(mo - mb);
        sCorr[ri] = corr;
        sL[ri] = sL[ri] * corr + sum;
        sM[ri] = mb;
      }
      subgroupMemoryBarrierShared();
      subgroupBarrier();
      // 3. O = O · corr (per row) + P · V.
#if defined(COOPMAT_EMULATED)
      UNROLL for (uint t = 0; t < DT; ++t)
        UNROLL for (uint q = 0; q < EL; ++q) {
          uint e = lane + q * LANES, r = e / NN, c = t * NN + e % NN;
          float acc = o[s][t][q] * sCorr[blk * MM + r];
          for (uint k = 0; k < KB; ++k) acc += float(sP[(blk * MM + r) * KB + k]) * float(sKV[KB * DP + k * DP + c]);
          o[s][t][q] = acc;
        }
#else
      UNROLL for (uint t = 0; t < DT; ++t) {
        MAT_STORE(o[s][t], sT, blk * MM * NN, NN);
        subgroupMemoryBarrierShared();
        subgroupBarrier();
        for (uint e = lane; e < MM * NN; e += gl_SubgroupSize) sT[blk * MM * NN + e] *= sCorr[blk * MM + e / NN];
        subgroupMemoryBarrierShared();
        subgroupBarrier();
        MAT_LOAD(o[s][t], sT, blk * MM * NN, NN);
        UNROLL for (uint kt = 0; kt < KB / KK; ++kt) {
          MAT_A pa;
          MAT_B vb;
          MAT_LOAD(pa, sP, blk * MM * KB + kt * KK, KB);
          MAT_LOAD(vb, sKV, KB * DP + kt * KK * DP + t * NN, DP);
          o[s][t] = MAT_MULADD(pa, vb, o[s][t]);
        }
        subgroupBarrier();  // sT is rewritten by the next tile
      }
#endif
    }
    barrier();  // the next key block overwrites sKV
  }

  // O / l, the real D columns of the real queries.
  UNROLL for (uint s = 0; s < BPS; ++s) {
    const uint blk = gl_SubgroupID + s * gl_NumSubgroups;
    if (blk >= 4) break;
    UNROLL for (uint t = 0; t < DT; ++t) {
#if defined(COOPMAT_EMULATED)
      UNROLL for (uint q = 0; q < EL; ++q) sT[blk * MM * NN + lane + q * LANES] = o[s][t][q];
#else
      MAT_STORE(o[s][t], sT, blk * MM * NN, NN);
#endif
      subgroupMemoryBarrierShared();
      subgroupBarrier();
      for (uint e = lane; e < MM * NN; e += gl_SubgroupSize) {
        uint r = e / NN, dd = t * NN + e % NN, qi = q0 + blk * MM + r;
        if (qi < p.lq && dd < p.d)
          STORE(O, (b * p.lq + qi) * row + h * p.d + dd, sT[blk * MM * NN + e] / sL[blk * MM + r]);
      }
      subgroupBarrier();
    }
  }
}
