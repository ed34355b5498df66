"""Writes test/fixtures/readers: small checkpoints made by torch.save itself (zip and legacy formats) and a
safetensors file written from the format description with numpy, so the TypeScript readers are checked against
files they did not write. Every tensor's exact float32 values go to expected.json.

    /usr/bin/python3 training/make_reader_fixtures.py test/fixtures/readers

Also writes hostile pickles (a __reduce__ to os.system, i.e. GLOBAL `posix system`, alone and inside a
torch.save file). Saving them executes nothing; only unpickling would, and the readers must refuse them.
"""
import collections
import json
import os
import pickle
import struct
import sys

import numpy as np
import torch


def tensors():
    """Covers every layout trap: transposed (TF-layout) views, offset views into one shared storage, a step
    view, every dtype we convert, a 0-dim scalar, an empty tensor and an nn.Parameter."""
    g = torch.Generator().manual_seed(7)
    r = lambda *s: torch.randn(*s, generator=g)
    sd = collections.OrderedDict()
    sd['f32'] = r(3, 4)
    # TF (in, out) storage, PyTorch (out, in) view with stride (1, out), as convert_tf_to_pytorch.py does
    sd['linear_tf'] = torch.from_numpy(np.transpose(r(4, 5).numpy()))
    # TF HWIO storage, OIHW view
    sd['conv_tf'] = torch.from_numpy(np.transpose(r(3, 3, 2, 4).numpy(), (3, 2, 0, 1)))
    shared = r(40)
    sd['offset_a'] = shared[10:20]
    sd['offset_b'] = shared[30:36].view(2, 3)
    sd['offset_b_t'] = shared[30:36].view(2, 3).t()
    sd['step'] = shared[1:17:3]
    sd['f16'] = r(2, 5).half()
    sd['bf16'] = r(7).bfloat16()
    sd['f64'] = r(2, 2).double()
    sd['i64'] = torch.tensor([-(2 ** 40), -1, 0, 3, 2 ** 40], dtype=torch.int64)
    sd['i32'] = torch.tensor([-7, 0, 9], dtype=torch.int32)
    sd['u8'] = torch.tensor([0, 1, 255], dtype=torch.uint8)
    sd['bool'] = torch.tensor([True, False, True])
    sd['scalar'] = torch.tensor(2.5)
    sd['empty'] = torch.zeros(0, 3)
    sd['param'] = torch.nn.Parameter(r(2, 3))
    assert not sd['linear_tf'].is_contiguous() and not sd['conv_tf'].is_contiguous()
    assert sd['offset_b'].storage_offset() == 30
    return sd


def expected(sd):
    out = {}
    for k, t in sd.items():
        t = t.detach()
        dtype = {torch.float32: 'F32', torch.float16: 'F16', torch.bfloat16: 'BF16', torch.float64: 'F64',
                 torch.int64: 'I64', torch.int32: 'I32', torch.uint8: 'U8', torch.bool: 'BOOL'}[t.dtype]
        # the value a float32 reader must produce (float64 and int64 round to nearest float32)
        values = t.to(torch.float64).to(torch.float32).to(torch.float64).reshape(-1).tolist()
        out[k] = {'dtype': dtype, 'shape': list(t.shape), 'values': values}
    return out


def safetensors_bytes(arrays, metadata):
    """Header entries in a deliberately non-alphabetical data order, with __metadata__."""
    header, blobs, off = {'__metadata__': metadata}, [], 0
    for name, (dtype, shape, raw) in arrays.items():
        header[name] = {'dtype': dtype, 'shape': shape, 'data_offsets': [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    return struct.pack('<Q', len(h)) + h + b''.join(blobs)


class Evil:
    def __reduce__(self):
        return (os.system, ('touch /tmp/cawa-pwned',))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    sd = tensors()
    torch.save(sd, os.path.join(out, 'torch-zip.pth'))
    torch.save(sd, os.path.join(out, 'torch-legacy.pth'), _use_new_zipfile_serialization=False)
    torch.save({'state_dict': sd, 'epoch': 3, 'note': 'nested'}, os.path.join(out, 'torch-nested.pth'))

    g = torch.Generator().manual_seed(11)
    f32 = torch.randn(3, 2, generator=g)
    f16 = torch.randn(5, generator=g).half()
    bf16 = torch.randn(2, 3, generator=g).bfloat16()
    i64 = torch.tensor([5, -6, 2 ** 33])
    arrays = collections.OrderedDict([
        ('b.f16', ('F16', [5], f16.numpy().tobytes())),
        ('a.f32', ('F32', [3, 2], f32.numpy().astype('<f4').tobytes())),
        ('c.bf16', ('BF16', [2, 3], bf16.view(torch.int16).numpy().astype('<i2').tobytes())),
        ('d.i64', ('I64', [3], i64.numpy().astype('<i8').tobytes())),
        ('e.scalar', ('F32', [], np.float32(-1.25).tobytes())),
    ])
    with open(os.path.join(out, 'numpy.safetensors'), 'wb') as f:
        f.write(safetensors_bytes(arrays, {'format': 'pt'}))
    exp = {'torch': expected(sd), 'safetensors': expected(collections.OrderedDict(
        [('a.f32', f32), ('b.f16', f16), ('c.bf16', bf16), ('d.i64', i64), ('e.scalar', torch.tensor(-1.25))]))}
    with open(os.path.join(out, 'expected.json'), 'w') as f:
        json.dump(exp, f)

    # a dtype the readers cannot convert (torch.ComplexFloatStorage)
    torch.save({'c': torch.randn(2, dtype=torch.cfloat, generator=g)}, os.path.join(out, 'complex-zip.pth'))

    # plain data at every pickle protocol, to check the unpickler against Python's own pickler
    plain = {'int': [0, 1, -1, 255, 256, 65535, 65536, -2 ** 31, 2 ** 31, 2 ** 62, -2 ** 70],
             'float': [0.5, -1e300], 'str': ['', 'h\u00e9llo \u2603'], 'bytes': b'\x00\xff',
             'tuple': (1, (2, 3)), 'none': None, 'bools': [True, False], 'nested': {'a': [1, {'b': 2}]}}
    for proto in range(6):
        with open(os.path.join(out, f'plain-p{proto}.pkl'), 'wb') as f:
            pickle.dump(plain, f, protocol=proto)

    # hostile files: what an attacker would ship as a "checkpoint"
    with open(os.path.join(out, 'evil-p2.pkl'), 'wb') as f:
        pickle.dump({'w': 1, 'x': Evil()}, f, protocol=2)
    with open(os.path.join(out, 'evil-p4.pkl'), 'wb') as f:
        pickle.dump({'w': 1, 'x': Evil()}, f, protocol=4)   # STACK_GLOBAL instead of GLOBAL
    evil_sd = collections.OrderedDict([('w', torch.ones(2)), ('x', Evil())])
    torch.save(evil_sd, os.path.join(out, 'evil-zip.pth'))
    torch.save(evil_sd, os.path.join(out, 'evil-legacy.pth'), _use_new_zipfile_serialization=False)


if __name__ == '__main__':
    main()
