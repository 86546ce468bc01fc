--[[
One report, several languages: keeps the text written in the document's `lang` and drops the other languages'.

report.qmd holds its prose once per language, in blocks and spans with a class `lang-<code>`:

    ::: lang-en                         # [Backpropagation through time]{.lang-en}[Retropropagación …]{.lang-es}
    Prose in English.
    :::

A block or span whose language is the document's is replaced by its content; any other is removed. Captions given as
cell options (`fig-cap`, `tbl-cap`) hold such spans too: Quarto's Jupyter engine passes a table caption to the
first filters as the text of a cell attribute, so the spans are selected in that text as well. The document's
language is its `lang` metadata (`-M lang:es`, or the front matter), its code compared without region (`es-ES`
is `es`).

The report's cells write their own sentences in the `lang` parameter of the kernel; they mark the language they
wrote in with an empty span `[]{.report-language lang=es}`, and the render stops if that is not the document's
language (a page half in one language and half in another), telling how to render it.

Quarto runs this filter first (`at: pre-ast` in the front matter); the offline renderer runs the filters of the
front matter before its crossref.lua.
]]

local lang = "en"

local function base(code)
  return (code or ""):match("^(%a+)") or ""
end

-- The language of a `lang-xx` class of `element`, or nil.
local function language_of(element)
  for _, class in ipairs(element.classes) do
    local code = class:match("^lang%-(%a[%w%-]*)$")
    if code then
      return base(code)
    end
  end
  return nil
end

local function is_space(inline)
  return inline.t == "Space" or inline.t == "SoftBreak" or inline.t == "LineBreak"
end

-- The text of a caption given as an attribute, with only this language's spans (unwrapped).
local function select_in_text(text)
  local selected, count = text:gsub("(%b[]){%.lang%-(%a[%w%-]*)}", function(body, code)
    return base(code) == lang and body:sub(2, -2) or ""
  end)
  if count == 0 then
    return text
  end
  return (selected:gsub("^%s+", ""):gsub("%s+$", ""):gsub("%s%s+", " "))
end

-- Inlines: this language's spans unwrapped, the others' removed, with the spaces between them.
local function select_inlines(inlines)
  local result = pandoc.Inlines({})
  local changed = false
  for _, inline in ipairs(inlines) do
    if inline.t == "Span" and inline.classes:includes("report-language") then
      local wrote = base(inline.attributes.lang)
      if wrote ~= lang then
        error(
          "the report's cells wrote in '" .. wrote .. "' but the document's language is '" .. lang
            .. "': give the kernel the same language as the page (quarto render -M lang:" .. lang
            .. " -P lang:" .. lang .. ", or python -m rnn_gradients render --lang " .. lang .. ")",
          0
        )
      end
      changed = true
    elseif inline.t == "Span" and language_of(inline) then
      changed = true
      if language_of(inline) == lang then
        result:extend(inline.content)
      end
    else
      result:insert(inline)
    end
  end
  if not changed then
    return nil
  end
  local tidy = pandoc.Inlines({})
  for _, inline in ipairs(result) do
    local previous = tidy[#tidy]
    if not (is_space(inline) and (previous == nil or is_space(previous))) then
      tidy:insert(inline)
    end
  end
  while #tidy > 0 and is_space(tidy[#tidy]) do
    tidy:remove(#tidy)
  end
  return tidy
end

local function select_blocks(blocks)
  local result = pandoc.Blocks({})
  local changed = false
  for _, block in ipairs(blocks) do
    local code = block.t == "Div" and language_of(block)
    if code then
      changed = true
      if code == lang then
        result:extend(block.content)
      end
    elseif (block.t == "Para" or block.t == "Plain") and #block.content == 0 then
      changed = true -- a paragraph that held only another language's text, or the language mark
    else
      result:insert(block)
    end
  end
  return changed and result or nil
end

local function select_attributes(element)
  local changed = false
  for _, name in ipairs({ "fig-cap", "tbl-cap", "fig-alt" }) do
    local value = element.attributes[name]
    if value then
      element.attributes[name] = select_in_text(value)
      changed = true
    end
  end
  return changed and element or nil
end

function Pandoc(doc)
  lang = base(doc.meta.lang and pandoc.utils.stringify(doc.meta.lang) or "en")
  local filter = {
    Inlines = select_inlines,
    Div = select_attributes,
  }
  -- Inlines first (so that a paragraph left empty is seen as empty), then blocks.
  doc = doc:walk(filter)
  doc = doc:walk({ Blocks = select_blocks })
  for key, value in pairs(doc.meta) do
    if pandoc.utils.type(value) == "Inlines" then
      doc.meta[key] = select_inlines(value) or value
    end
  end
  return doc
end
