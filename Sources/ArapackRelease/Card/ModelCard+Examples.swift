import ArapackFormats
import ArapackModel

/// The card's code examples, each a ```python block that runs as written (CI runs every block on real bundles,
/// in transformers 5 and 4): the quick start; for a causal model with a tokenizer, batch inference over padded
/// prompts and the perplexity of a text.
extension ModelCard {
    /// The card's example sections, Markdown lines.
    static func examples(_ c: ModelConfig, form: any BundleForm, quantized: String?, repository: String, published: Bool,
                         tokenizer: Bool) -> [String] {
        func block(_ title: String, _ intro: String?, _ code: [String]) -> [String] {
            ["", "## \(title)", ""] + (intro.map { [$0, ""] } ?? []) + ["```python"] + code + ["```"]
        }
        var lines = block("Quick start", nil, quickStart(c, form: form, quantized: quantized, repository: repository, published: published,
                                                         tokenizer: tokenizer))
        guard c.causal, tokenizer else { return lines }
        lines += block("Batch inference", "Prompts of different lengths in one batch: the tokenizer pads them (with an attention mask) "
                       + "and each row generates what it would alone.",
                       batchInference(c, form: form, quantized: quantized, repository: repository, published: published))
        lines += block("Perplexity", "The model's perplexity on a text: the exponential of the mean next-token cross-entropy.",
                       perplexity(c, form: form, quantized: quantized, repository: repository, published: published))
        return lines
    }

    /// The lines that import and load the model (and the tokenizer) from `repository`.
    static func loading(_ c: ModelConfig, form: any BundleForm, quantized: String?, repository: String, published: Bool, tokenizer: Bool,
                        extraImports: String = "") -> [String] {
        let repo = JSONValue.string(repository).serialized()
        let modelClass = c.causal ? "AutoModelForCausalLM" : "AutoModelForMaskedLM"
        return [
            "import torch",
            "from transformers import \(modelClass)" + (tokenizer ? ", AutoTokenizer" : "") + extraImports,
            "",
            "# " + (published ? "the Hub repository; or the folder it was downloaded to"
                              : "this release's folder (its archive unpacks to it); or the Hub repository it is published as"),
        ] + (quantized.map { ["# \($0) weights in the compressed-tensors format: pip install compressed-tensors"] } ?? []) + [
            "model = \(modelClass).from_pretrained(\(repo)\(form.loadArguments), torch_dtype=\"auto\")",
        ] + (tokenizer ? ["tokenizer = AutoTokenizer.from_pretrained(\(repo), subfolder=\"base_tokenizer\")"] : [])
    }

    /// Python that loads this bundle from `repository` (its Hub id, or its folder) and runs it, as written: the forward pass and,
    /// for the causal model, sampling with `generate` and with the training code's own sampler.
    static func quickStart(_ c: ModelConfig, form: any BundleForm, quantized: String?, repository: String, published: Bool,
                           tokenizer: Bool) -> [String] {
        var code = loading(c, form: form, quantized: quantized, repository: repository, published: published, tokenizer: tokenizer,
                           extraImports: c.causal ? ", GenerationConfig" : "")
        let positions = form.positionsExpression
        if tokenizer {
            code.append("ids = tokenizer(\"بسم الله الرحمن الرحيم\", return_tensors=\"pt\").input_ids[:, : \(positions) // 2]")
        } else {
            code.append("ids = torch.tensor([[\(c.bos)]])")
        }
        code += [
            "with torch.no_grad():",
            "    logits = model(ids).logits  # [1, tokens, vocabulary]",
        ]
        let show = tokenizer ? { (v: String) in "print(tokenizer.decode(\(v)))" } : { (v: String) in "print(\(v).tolist())" }
        if c.causal {
            code += [
                "room = \(positions) - ids.shape[1]  # new tokens never pass the model's positions",
                "output = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=GenerationConfig(",
                "    do_sample=True, temperature=0.8, top_p=0.9, max_new_tokens=min(128, room), eos_token_id=\(c.eos), pad_token_id=\(c.pad)))",
                show("output[0]"),
            ]
            if form.hasTrainingSampler {
                code += [
                    "# the training code's own sampler, on the module the model holds",
                    "generated = model.model.generate(ids, max_new_tokens=min(100, room), temperature=0.8, top_p=0.9, eos_token_id=\(c.eos))",
                    show("generated[0]"),
                ]
            }
        } else {
            code += [
                "# bidirectional: predict a masked position from both sides",
                "masked = ids.clone()",
                "masked[0, -1] = \(c.mask)  # the mask token",
                "with torch.no_grad():",
                "    predicted = model(masked).logits[0, -1].argmax()",
                show("predicted.view(1)"),
            ]
        }
        return code
    }


    /// Greedy generation for a batch of prompts of different lengths, padded by the tokenizer.
    static func batchInference(_ c: ModelConfig, form: any BundleForm, quantized: String?, repository: String, published: Bool) -> [String] {
        let positions = form.positionsExpression
        return loading(c, form: form, quantized: quantized, repository: repository, published: published, tokenizer: true) + [
            "tokenizer.padding_side = \"left\"  # each prompt ends where generation continues",
            "prompts = [\"بسم الله الرحمن الرحيم\", \"الحمد لله\", \"قل هو الله أحد الله الصمد\"]",
            "inputs = tokenizer(prompts, return_tensors=\"pt\", padding=True, truncation=True, max_length=\(positions) // 2)",
            "room = \(positions) - inputs.input_ids.shape[1]  # new tokens never pass the model's positions",
            "outputs = model.generate(**inputs, do_sample=False, max_new_tokens=min(32, room), pad_token_id=\(c.pad))",
            "for text in tokenizer.batch_decode(outputs, skip_special_tokens=True):",
            "    print(text)",
        ]
    }

    /// The perplexity of a text, from the model's own cross-entropy over its labels.
    static func perplexity(_ c: ModelConfig, form: any BundleForm, quantized: String?, repository: String, published: Bool) -> [String] {
        let positions = form.positionsExpression
        return ["import math"] + loading(c, form: form, quantized: quantized, repository: repository, published: published, tokenizer: true) + [
            "",
            "",
            "def perplexity(text):",
            "    ids = tokenizer(text, return_tensors=\"pt\", truncation=True, max_length=\(positions)).input_ids",
            "    with torch.no_grad():",
            "        loss = model(ids, labels=ids).loss  # the mean cross-entropy of each next token",
            "    return math.exp(loss.item())",
            "",
            "",
            "print(f\"perplexity: {perplexity('الحمد لله رب العالمين الرحمن الرحيم مالك يوم الدين'):.6g}\")",
        ]
    }
}
