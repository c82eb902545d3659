"""Training corpora: documents from files, Hugging Face datasets and named corpora; token rows that
resume exactly where a stream stood."""

from __future__ import annotations

import itertools
import json
import os
import random

import pytest
import torch

from interp.data.corpus import (
    CorpusError,
    TokenRows,
    corpus_documents,
    dataset_documents,
    file_documents,
)


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


class TestFiles:
    def test_txt_documents_by_line_paragraph_and_file(self, tmp_path):
        path = write(tmp_path / "a.txt", "one\ntwo\n\nthree\nfour\n\n\nfive\n")
        assert list(file_documents([path])) == ["one", "two", "", "three", "four", "", "", "five"]
        assert list(file_documents([path], sample_by="paragraph")) == ["one\ntwo", "three\nfour", "five"]
        assert list(file_documents([path], sample_by="document")) == [path.read_text()]
        with pytest.raises(CorpusError, match="sample_by='page'"):
            list(file_documents([path], sample_by="page"))

    def test_jsonl_reads_the_text_field_and_names_the_line_of_a_bad_row(self, tmp_path):
        path = write(tmp_path / "a.jsonl", '{"text": "x y", "body": "b1"}\n\n{"text": "z", "body": "b2"}\n')
        assert list(file_documents([path])) == ["x y", "z"]
        assert list(file_documents([path], text_field="body")) == ["b1", "b2"]
        with pytest.raises(
            CorpusError, match=r"a.jsonl line 1: no field 'content' \(fields: 'text', 'body'\)"
        ):
            list(file_documents([path], text_field="content"))
        write(path, '{"text": "ok"}\n{"text": 3}\n')
        with pytest.raises(CorpusError, match="line 2: field 'text' is int"):
            list(file_documents([path]))
        write(path, '{"text": "ok"}\nnot json\n')
        with pytest.raises(CorpusError, match="line 2 is not JSON"):
            list(file_documents([path]))

    def test_parquet_reads_a_column(self, tmp_path):
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = tmp_path / "a.parquet"
        pq.write_table(pa.table({"text": ["p", "q r"], "n": [1, 2]}), path)
        assert list(file_documents([path])) == ["p", "q r"]
        with pytest.raises(CorpusError, match=r"no column 'body' \(columns: text, n\)"):
            list(file_documents([path], text_field="body"))
        with pytest.raises(CorpusError, match="row 0: column 'n' is int"):
            list(file_documents([path], text_field="n"))

    def test_a_directory_is_its_data_files_in_sorted_order_and_files_keep_their_order(self, tmp_path):
        (tmp_path / "d" / "sub").mkdir(parents=True)
        write(tmp_path / "d" / "b.txt", "b")
        write(tmp_path / "d" / "a.jsonl", '{"text": "a"}\n')
        write(tmp_path / "d" / "sub" / "c.txt", "c")
        write(tmp_path / "d" / "notes.md", "not data")
        assert list(file_documents([tmp_path / "d"])) == ["a", "b", "c"]
        assert list(file_documents([tmp_path / "d" / "b.txt", tmp_path / "d" / "a.jsonl"])) == ["b", "a"]

    def test_refusals_name_the_file(self, tmp_path):
        with pytest.raises(CorpusError, match="missing.txt does not exist"):
            list(file_documents([tmp_path / "missing.txt"]))
        with pytest.raises(CorpusError, match="not .md"):
            list(file_documents([write(tmp_path / "x.md", "x")]))
        (tmp_path / "empty").mkdir()
        with pytest.raises(CorpusError, match="holds no"):
            list(file_documents([tmp_path / "empty"]))
        write(tmp_path / "bad.txt", "").write_bytes(b"\xff\xfe\xfa")
        with pytest.raises(CorpusError, match="bad.txt is not UTF-8"):
            list(file_documents([tmp_path / "bad.txt"]))
        os.mkfifo(tmp_path / "pipe.txt")  # opening it for reading must not wait for a writer
        with pytest.raises(CorpusError, match="FIFO"):
            list(file_documents([tmp_path / "pipe.txt"]))


@pytest.mark.slow  # importing `datasets` takes seconds
def test_a_dataset_streams_the_same_documents_as_its_files(tmp_path):
    rows = [{"text": f"document {i}", "other": i} for i in range(7)]
    folder = tmp_path / "ds"
    folder.mkdir()
    write(folder / "train.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    expected = [row["text"] for row in rows]
    assert list(dataset_documents(str(folder))) == expected  # a local dataset directory
    assert list(dataset_documents("json", data_files=[str(folder / "train.jsonl")])) == expected
    assert list(file_documents([folder / "train.jsonl"])) == expected
    with pytest.raises(CorpusError, match="row 0: no field 'body'"):
        list(dataset_documents(str(folder), text_field="body"))
    with pytest.raises(CorpusError, match="cannot be loaded"):
        list(dataset_documents(str(folder), split="validation"))


def test_named_corpora_and_the_toys_own_mixture():
    import interp.toy.corpus  # noqa: F401  (registers "toy")
    from interp.toy.train import make_batch, make_tokenizer

    with pytest.raises(CorpusError, match="corpus 'pile' is not registered"):
        corpus_documents("pile")
    docs = list(itertools.islice(corpus_documents("toy", seed=3), 40))
    assert docs == list(itertools.islice(corpus_documents("toy", seed=3), 40))
    assert docs != list(itertools.islice(corpus_documents("toy", seed=4), 40))
    rng, tokenizer = random.Random(3), make_tokenizer()
    expected = []
    for _ in range(3):
        tokens, loss_mask = make_batch(rng, tokenizer, 16)
        for row in tokens.tolist():
            expected.append(row[: max(i for i, t in enumerate(row) if t != 0) + 1])
    assert docs == expected[:40]  # the rows the toy is trained on, without their padding
    assert all(0 not in doc for doc in docs)


def tokenize(text: str) -> list[int]:
    return [len(word) for word in text.split()]  # a stand-in tokenizer: one id per word


class TestTokenRows:
    DOCS = ["a bb ccc", "", "dddd", "ee f gg hhh iiii", "j", "kk lll mmmm nnnnn"]

    def test_packing_concatenates_documents_with_the_separator(self):
        rows = list(TokenRows(self.DOCS, tokenize, 4, separator=0))
        stream = [t for doc in self.DOCS if doc for t in tokenize(doc) + [0]]
        assert rows == [(stream[i : i + 4], 4) for i in range(0, len(stream) - 3, 4)]
        assert len(rows) == len(stream) // 4  # the last partial row is dropped
        no_separator = list(TokenRows(self.DOCS, tokenize, 4, separator=None))
        assert [r for r, _ in no_separator][0] == [1, 2, 3, 4]

    def test_one_row_per_document_truncated_and_padded(self):
        rows = list(TokenRows(self.DOCS, tokenize, 3, pack=False, pad_id=9))
        assert rows == [([1, 2, 3], 3), ([4, 9, 9], 1), ([2, 1, 2], 3), ([1, 9, 9], 1), ([2, 3, 4], 3)]
        ids_docs = [[5, 6], [], [7, 8, 9, 10]]  # token-id documents are used as they are
        assert list(TokenRows(ids_docs, tokenize, 3, pack=False)) == [([5, 6, 0], 2), ([7, 8, 9], 3)]

    @pytest.mark.parametrize("pack", [True, False])
    def test_a_stream_restored_from_its_state_goes_on_with_the_same_rows(self, pack):
        docs = [" ".join("x" * random.Random(i).randint(1, 6) for _ in range(i % 7)) for i in range(60)]
        straight = list(TokenRows(docs, tokenize, 5, pack=pack, separator=0))
        for cut in range(len(straight)):
            rows = TokenRows(docs, tokenize, 5, pack=pack, separator=0)
            head = list(itertools.islice(rows, cut))
            state = json.loads(json.dumps(rows.state()))  # as a checkpoint stores it
            resumed = TokenRows(iter(docs), tokenize, 5, pack=pack, separator=0, state=state)
            assert head + list(resumed) == straight
        with pytest.raises(Exception, match="the data changed"):
            TokenRows(docs[:3], tokenize, 5, state={"documents": 10, "carry": []})

    def test_batches_hold_rows_and_a_mask_of_real_tokens_and_stop_at_a_budget(self):
        rows = TokenRows(self.DOCS, tokenize, 3, pack=False)
        batches = list(rows.batches(2, max_tokens=5))
        assert len(batches) == 2  # 3 + 1 real tokens, then 3 + 1: the budget of 5 is passed
        tokens, mask = batches[0]
        assert tokens.tolist() == [[1, 2, 3], [4, 0, 0]]
        assert mask.tolist() == [[True, True, True], [True, False, False]]
        assert [t.shape[0] for t, _ in rows.batches(2)] == [1]  # what is left: one row
        with pytest.raises(Exception, match="context_length=1"):
            TokenRows(self.DOCS, tokenize, 1)
        assert isinstance(tokens, torch.Tensor) and tokens.dtype == torch.long
