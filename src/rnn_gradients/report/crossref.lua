--[[
Quarto's numbering and cross-references for the offline renderer (rnn_gradients.report.render), as a pandoc
Lua filter.

What it does, the way Quarto does it for HTML:
  * numbers the figures (a pandoc Figure whose id starts with "fig-") and the tables (a Div whose id starts with
    "tbl-" and that holds a Div of class "table-caption") in document order, and starts each caption with
    "Figure 1: " / "Table 1: ";
  * resolves the references @fig-x, @tbl-x and @sec-x (and [@fig-x], [-@fig-x]) to links whose text is
    "Figure 3", "Table 2", "Section 4.1" (a bare number for [-@fig-x]); sections are numbered as pandoc's
    --number-sections numbers them;
  * stops the render on a reference to a label that does not exist, or on a label used twice;
  * sets the table-of-contents title from the document's language unless the document sets toc-title, and
    replaces the date "today" by today's date (ISO 8601, as the report's `date-format: iso` asks Quarto to).

The words come from WORDS below, keyed by the document's `lang` (Quarto 1.11's own translations, from its
_language*.yml files); a language without an entry falls back to English, as Quarto does.
]]

local WORDS = {
  en = { fig = "Figure", tbl = "Table", sec = "Section", toc = "Table of contents" },
  es = { fig = "Figura", tbl = "Tabla", sec = "Sección", toc = "Tabla de contenidos" },
}

-- Every cross-reference prefix Quarto knows: a citation with one of these prefixes is a cross-reference,
-- so an unknown label with such a prefix is an error instead of being left as text.
local REF_KINDS = {
  fig = true, tbl = true, sec = true, eq = true, lst = true, thm = true, lem = true, cor = true,
  prp = true, cnj = true, def = true, exm = true, exr = true,
}

local NBSP = "\u{00A0}"

local function words_for(lang)
  lang = lang or "en"
  return WORDS[lang] or WORDS[lang:match("^(%a+)")] or WORDS.en
end

local function kind_of(id)
  local kind = id:match("^(%a+)%-")
  if kind and REF_KINDS[kind] then
    return kind
  end
  return nil
end

local function has_class(element, class)
  for _, name in ipairs(element.classes) do
    if name == class then
      return true
    end
  end
  return false
end

-- Prepend "Figure 1: " (in a span of class `number_class`) to the first paragraph of `blocks`.
local function prefix_caption(blocks, label, number_class)
  local prefix = pandoc.Span({ pandoc.Str(label .. ":") }, { class = number_class })
  local first = blocks[1]
  if first and (first.t == "Para" or first.t == "Plain") then
    first.content:insert(1, pandoc.Space())
    first.content:insert(1, prefix)
  else
    blocks:insert(1, pandoc.Plain({ prefix }))
  end
  return blocks
end

function Pandoc(doc)
  local words = words_for(doc.meta.lang and pandoc.utils.stringify(doc.meta.lang))
  local number_sections = PANDOC_WRITER_OPTIONS.number_sections
  local labels = {} -- id -> { kind = "fig", number = "3", title = inlines (sections) }
  local counts = { fig = 0, tbl = 0 }
  local levels = {}

  local function register(id, entry)
    if labels[id] then
      error("label '" .. id .. "' is used twice", 0)
    end
    labels[id] = entry
  end

  doc.blocks = doc.blocks:walk({
    traverse = "topdown",
    Header = function(header)
      local numbered = not has_class(header, "unnumbered")
      if numbered then
        levels[header.level] = (levels[header.level] or 0) + 1
        for deeper = header.level + 1, 6 do
          levels[deeper] = nil
        end
      end
      if kind_of(header.identifier) == "sec" then
        local parts = {}
        for level = 1, header.level do
          parts[level] = tostring(levels[level] or 0)
        end
        local number = (numbered and number_sections) and table.concat(parts, ".") or nil
        register(header.identifier, { kind = "sec", number = number, title = header.content })
      end
    end,
    Figure = function(figure)
      if kind_of(figure.identifier) == "fig" then
        counts.fig = counts.fig + 1
        local number = tostring(counts.fig)
        register(figure.identifier, { kind = "fig", number = number })
        figure.caption.long = prefix_caption(figure.caption.long, words.fig .. NBSP .. number, "figure-number")
        return figure
      end
    end,
    Div = function(div)
      if kind_of(div.identifier) == "tbl" then
        counts.tbl = counts.tbl + 1
        local number = tostring(counts.tbl)
        register(div.identifier, { kind = "tbl", number = number })
        for _, block in ipairs(div.content) do
          if block.t == "Div" and has_class(block, "table-caption") then
            block.content = prefix_caption(block.content, words.tbl .. NBSP .. number, "table-number")
            return div
          end
        end
        error("table '" .. div.identifier .. "' has no caption", 0)
      end
    end,
  })

  local unknown = {}
  doc = doc:walk({
    Cite = function(cite)
      local links = pandoc.Inlines({})
      for i, citation in ipairs(cite.citations) do
        if not kind_of(citation.id) then
          return nil -- a citation, not a cross-reference: left to pandoc
        end
        local entry = labels[citation.id]
        if not entry then
          table.insert(unknown, "@" .. citation.id)
          return nil
        end
        local text
        if entry.kind == "sec" and not entry.number then
          text = entry.title
        elseif citation.mode == "SuppressAuthor" then
          text = { pandoc.Str(entry.number) }
        else
          text = { pandoc.Str(words[entry.kind] .. NBSP .. entry.number) }
        end
        if i > 1 then
          links:extend({ pandoc.Str(","), pandoc.Space() })
        end
        links:insert(pandoc.Link(text, "#" .. citation.id))
      end
      return links
    end,
  })
  if #unknown > 0 then
    local known = {}
    for id in pairs(labels) do
      table.insert(known, id)
    end
    table.sort(known)
    error(
      "unresolved cross-references: " .. table.concat(unknown, ", ")
        .. " (known labels: " .. (#known > 0 and table.concat(known, ", ") or "none") .. ")",
      0
    )
  end

  if doc.meta["toc-title"] == nil then
    doc.meta["toc-title"] = pandoc.Inlines({ pandoc.Str(words.toc) })
  end
  if doc.meta.date and pandoc.utils.stringify(doc.meta.date) == "today" then
    doc.meta.date = pandoc.Inlines({ pandoc.Str(os.date("%Y-%m-%d")) })
  end
  return doc
end
