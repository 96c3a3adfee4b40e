import sys, shutil, re, os
M = sys.argv[1]
root = '/tmp/mut/reference/src'
shutil.rmtree(root); shutil.copytree('/tmp/mutdrv/ref-src-pristine', root)
def edit(path, old, new, count=1):
    p = os.path.join(root, path); s = open(p).read()
    assert s.count(old) >= 1, (M, path, old)
    s = s.replace(old, new, count); open(p, 'w').write(s)
# Baseline for every run: the log-space families' c raised to 16, so that
# the calibration shortfall (FINDINGS 3) does not mask what the mutation breaks.
p = os.path.join(root, 'bounds/constants.rs'); s = open(p).read()
s = re.sub(r'(pub const (PARALLEL|CHUNKED)_C_[A-Z0-9_]+: f64 = )[0-9.]+;', r'\g<1>16.0;', s)
open(p, 'w').write(s)
if M == 'baseline':
    pass
elif M == 'M1_anchor_off_by_one':
    edit('chunked/mod.rs', "let kf = cum.factor(k.slice(s![0..i0, ..]), |r| (i0, r as isize), T::one(), plan.offdiag_k);",
         "let kf = cum.factor(k.slice(s![0..i0, ..]), |r| (i0 - 1, r as isize), T::one(), plan.offdiag_k);")
elif M == 'M2_mask_by_multiplication':
    edit('chunked/mod.rs', """            for j in i0..=i {
                let kj = k.row(j);
                let kj = kj.as_slice().expect("standard layout");
                cum.dec_row(i, j as isize, &mut buf);""", """            for j in i0..i1 {
                let kj = k.row(j);
                let kj = kj.as_slice().expect("standard layout");
                if j <= i {
                    cum.dec_row(i, j as isize, &mut buf);
                } else {
                    // MUTATION: evaluate the masked upper triangle, mask by multiplication below.
                    for (d, b) in buf.iter_mut().enumerate() {
                        let c = if cum.kg == 1 { 0 } else { d };
                        *b = (cum.gr[[i, c]] - cum.gr[[j, c]]).exp();
                    }
                }""")
    edit('chunked/mod.rs', "                a[[i, j]] = scale * acc;",
         "                a[[i, j]] = scale * acc * (if j <= i { T::one() } else { T::zero() });")
elif M == 'M3_dropped_h0_term':
    edit('chunked/mod.rs', """        let mut oc = c.qe.dot(&hs);""", """        let mut oc = c.qe.dot(&hs);
        if p0 == 0 {
            oc.fill(T::zero()); // MUTATION: the h0 term of the first chunk's output dropped
        }""")
elif M == 'M4a_dg_without_hT_term_recurrent':
    edit('recurrent.rs', "(0..kd).map(|d| dot(&ht[d * vd..(d + 1) * vd], &j.dht[d * vd..(d + 1) * vd])).collect()",
         "(0..kd).map(|_d| T::zero()).collect() // MUTATION: no rowsum(hT * dhT) seed")
elif M == 'M4b_dg_without_hT_term_chunked':
    edit('chunked/mod.rs', "                chk.glast[d] * hsum + ksum",
         "                if p0 + lp == l { ksum } else { chk.glast[d] * hsum + ksum } // MUTATION: last chunk drops the hT*dhT state term")
elif M == 'M5a_dg_sign_chunked':
    edit('chunked/mod.rs', "acc[d] += q[[i, d]] * dqc[[i, d]] - k[[i, d]] * dkc[[i, d]];",
         "acc[d] += q[[i, d]] * dqc[[i, d]] + k[[i, d]] * dkc[[i, d]]; // MUTATION: sign")
elif M == 'M5b_dg_sign_recurrent':
    edit('recurrent.rs', """                    } else {
                        qt[d] * dq[t * kd + d] - kdv * dkd
                    };""", """                    } else {
                        qt[d] * dq[t * kd + d] + kdv * dkd // MUTATION: sign
                    };""")
elif M == 'M6_varlen_state_index_off_by_one':
    edit('chunked/seg.rs', """                h0: p
                    .h0()
                    .map(|a| conv(a.slice(s![span.state, h, .., ..])))""", """                h0: p
                    .h0()
                    .map(|a| conv(a.slice(s![span.state.saturating_sub(1), h, .., ..]))) // MUTATION""")
elif M == 'M7_scalar_dg_first_channel_only':
    edit('chunked/seg.rs', """            for &x in dg.row(i) {
                acc += x;
            }""", """            acc += dg[[i, 0]]; // MUTATION: channel 0 only instead of the channel sum""")
else:
    raise SystemExit('unknown ' + M)
print('applied', M)
